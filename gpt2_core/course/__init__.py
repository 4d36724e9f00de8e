"""The course's own tooling, above the library.

The library (``text``, ``model``, ``pretraining``, ``finetuning``) is what a learner reads and imports, and it
never imports from here. This package holds what runs the course around it: the command-line tools
(``train``, ``generate``), the reference course model (``reference``), the experiment commands whose
measurements the notebooks read (``spam_runs``, ``instruction_runs``, ``reward_runs``), the headline numbers
and the README tables (``results``), the prose checks (``prose``, ``prose_numbers``), the notebook tools
(``notebook_tools``) and the benchmark (``bench``).
"""
