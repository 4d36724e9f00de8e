"""The course's pictures, drawn in code with matplotlib (no image files), shared by every notebook.

- :mod:`.diagrams`: how the pieces work, chapters 1-5 (a pipeline with shapes on its arrows, a residual
  stream with its shortcuts, a loop, inputs and their next-token targets, causal and local masks, the KV
  cache filling up);
- :mod:`.probabilities`: the distributions a model computes (attention heads, chapter 3; the next-token
  distribution under temperature, top-k and top-p, chapter 5);
- :mod:`.finetuning`: chapters 6-7 (pooling for the classification head, the loss mask, LoRA);
- :mod:`.charts`: results of chapter 6 (confusion matrix, fine-tuning curves, learning curve), and labels
  for the points of a scatter plot that keep clear of each other (chapter 2); :func:`save_figure` writes a
  figure to a PNG file atomically.

Every drawing function returns a new ``Figure`` with a title; ``plt.show()`` displays it in a notebook.
"""

from .charts import (
    label_points,
    plot_confusion,
    plot_family_scores,
    plot_finetune,
    plot_learning_curve,
    plot_lengths,
    save_figure,
)
from .diagrams import (
    allowed_keys,
    cycle_diagram,
    flow_diagram,
    kv_cache_diagram,
    mask_diagram,
    residual_diagram,
    shift_diagram,
)
from .finetuning import lora_diagram, loss_mask_diagram, pooling_diagram
from .probabilities import plot_attention_heads, plot_sampling

__all__ = ["allowed_keys", "cycle_diagram", "flow_diagram", "kv_cache_diagram", "label_points", "lora_diagram",
           "loss_mask_diagram", "mask_diagram", "plot_attention_heads", "plot_confusion", "plot_family_scores",
           "plot_finetune", "plot_learning_curve", "plot_lengths", "plot_sampling", "pooling_diagram",
           "residual_diagram", "save_figure", "shift_diagram"]
