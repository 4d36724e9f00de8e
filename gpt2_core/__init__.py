"""gpt2_core: the companion package of the gpt2-from-scratch course.

One module per idea, in the order the chapters build them:

- ``profile``      profiles (tiny/default/gpt2), device choice, seeds, data paths
- ``bpe_ranks``    the offline GPT-2 BPE ranks (checksum-verified, from a registry package)
- ``tokenizer``    byte-level BPE: pre-tokenizer, trainer, encoder/decoder (chapter 1)
- ``data``         sliding-window dataset and dataloader (chapter 2)
- ``attention``    causal multi-head attention with a KV cache (chapter 3)
- ``config``/``model``  GPTConfig presets and GPTModel (chapter 4)
- ``hf_weights``   loading and exporting Hugging Face GPT-2 checkpoints (chapter 4)
- ``training``, ``generate``, ``checkpoint``, ``corpus``, ``pretrained``  (chapter 5)
- ``classification``, ``spam``  (chapter 6)
- ``instructions``, ``lora``    (chapter 7)
"""

__version__ = "0.1.0"
