"""gpt2_core: the companion package of the gpt2-from-scratch course.

One module per idea, in the order the chapters build them:

- ``profile``      profiles (tiny/default/gpt2), device choice, seeds, data paths
- ``bpe_ranks``    the offline GPT-2 BPE ranks (checksum-verified, from a registry package)
- ``tokenizer``    byte-level BPE: pre-tokenizer, trainer, encoder/decoder (chapter 1)
- ``data``         sliding-window dataset and dataloader (chapter 2)
- ``attention``    causal multi-head attention with a KV cache (chapter 3)
- ``config``/``model``  GPTConfig presets and GPTModel (chapter 4)
- ``hf_weights``   loading and exporting Hugging Face GPT-2 checkpoints (chapter 4)
- ``fused_loss``   the LM head fused with the cross-entropy (the model's training loss)
- ``training``, ``generate``, ``checkpoint``, ``corpus``, ``train``  (chapter 5)
- ``decoding``     the fast one-token step behind ``generate``'s KV cache (static shapes, compilable)
- ``flops``, ``bench``  FLOPs per token and MFU; speed against references (``python -m gpt2_core.bench``)
- ``reference``    the shipped reference course model and its tokenizer; bits per byte (chapter 5)
- ``pretrained``   which model chapters 6-7 start from; chapter 5's run recipes
- ``finetune``     the fine-tuning loop chapters 6 and 7 share
- ``spam``, ``classification``, ``baselines``  (chapter 6)
- ``instruction_data``, ``instruction_prompts``, ``instruction_eval``, ``instructions`` (re-exports
  them), ``lora``  (chapter 7)
- ``figures``      every chapter's pictures drawn in code: diagrams (``figures.diagrams``, chapters 1-5;
  ``figures.finetuning``, chapters 6-7) and result charts (``figures.charts``)
- ``results``      each chapter's headline numbers (``results/chNN.json``) and the README table
"""

__version__ = "0.1.0"
