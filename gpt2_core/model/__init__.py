"""Chapters 3-4, the model: attention and the KV cache (``attention``), the shape (``config``), GPT itself
(``gpt``, its weights' memory layout in ``layout``), its output layer fused with the loss (``fused_loss``),
OpenAI's weights in and out (``hf_weights``) and text generation (``generation``, used from chapter 5 on)."""
