"""gpt2_core: the companion package of the gpt2-from-scratch course.

Grouped as the course is, each subpackage a part of it, each module one idea:

- ``text``         chapters 1-2: the BPE tokenizer, GPT-2's ranks offline, the corpus, training windows
- ``model``        chapters 3-4: attention and the KV cache, GPTConfig, GPTModel (one forward for training,
                   prefill and decoding), the fused output layer + loss, Hugging Face weights, generation
- ``pretraining``  chapter 5: the shared loss, step and loop (every run's), AdamW + schedule, the training loop,
                   data parallelism, checkpoints (the model with its tokenizer), recipes
- ``finetuning``   chapters 6-8: the shared fine-tuning loop, the classifier and its data, instruction
                   tuning and LoRA

and the course's own tools: ``profile`` (profiles, device, seeds, data folders), ``checks`` (argument
checks at public entry points), ``files`` (sha256, verified downloads, atomic writes), ``reference``
(the shipped reference model; which model fine-tuning starts from), ``results`` (each chapter's
headline numbers and the README table), ``figures``, ``exercises``, ``flops`` and ``bench`` (speed
against references), ``notebook_tools``; and the command lines ``train`` and ``generate``.
"""

__version__ = "0.2.0"
