"""Chapter 5, pretraining: the one loss, step and evaluation every run shares (``step``), AdamW and the
learning-rate schedule (``optim``), batches in a resumable order (``batches``), the training loop (``loop``),
data parallelism (``distributed``), checkpoints (``checkpoint``, with the run's ``state``) and the recipes of
the course's pretrained models (``recipes``)."""
