"""Chapter 5, pretraining: the one loss, step and mean loss every run shares (``step``), the loop around
that step every run shares (``runner``), AdamW and the learning-rate schedule (``optim``), batches in a
resumable order (``batches``), the pretraining loop (``loop``), data parallelism (``distributed``),
checkpoints (``checkpoint``, with the run's ``state``) and the recipes of the course's pretrained models
(``recipes``)."""
