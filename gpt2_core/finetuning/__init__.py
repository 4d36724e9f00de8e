"""Chapters 6-8, fine-tuning: the shared loop (``loop``); a classifier (``classification``,
``classification_data``, ``spam``, ``baselines``, and its measured runs ``spam_runs``); instruction tuning
(``instruction_vocab``, ``instruction_data``, ``instruction_prompts``, ``instruction_eval``, ``lora``, and its
runs ``instruction_runs``); learning from rewards (``rewards``, ``rl``)."""
