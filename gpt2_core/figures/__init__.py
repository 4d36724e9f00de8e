"""The course's pictures, drawn in code with matplotlib (no image files), shared by every notebook.

- :mod:`.diagrams`: how the pieces work, chapters 1-5 (a pipeline with shapes on its arrows, a loop,
  inputs and their next-token targets, causal and local masks, the KV cache filling up);
- :mod:`.finetuning`: chapters 6-7 (pooling for the classification head, the loss mask, LoRA);
- :mod:`.charts`: results of chapter 6 (confusion matrix, fine-tuning curves, learning curve).

Every function returns a new ``Figure`` with a title; ``plt.show()`` displays it in a notebook.
"""

from .charts import plot_confusion, plot_finetune, plot_learning_curve
from .diagrams import allowed_keys, cycle_diagram, flow_diagram, kv_cache_diagram, mask_diagram, shift_diagram
from .finetuning import lora_diagram, loss_mask_diagram, pooling_diagram

__all__ = ["allowed_keys", "cycle_diagram", "flow_diagram", "kv_cache_diagram", "lora_diagram",
           "loss_mask_diagram", "mask_diagram", "plot_confusion", "plot_finetune", "plot_learning_curve",
           "pooling_diagram", "shift_diagram"]
