"""Chapters 6-8, fine-tuning: the shared loop (``loop``); a classifier (``classification``,
``classification_data``, ``spam``, ``baselines``); instruction tuning (``instruction_data``,
``instruction_prompts``, ``instruction_eval``, ``lora``)."""
