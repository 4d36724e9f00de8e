"""Chapter 6's checkers name the usual mistakes (the generic checks are in test_exercise_solutions.py)."""

from __future__ import annotations

from gpt2_core.exercises import check_exercise

# A plausible wrong answer for every checker (tests/test_exercise_solutions.py runs them all)
WRONG = {
    "ch06.accuracy": lambda t, p: 1.0,
    "ch06.f1_from_confusion": lambda cm: cm[1][1] / max(cm[1][1] + cm[0][1], 1),  # precision, not F1
    "ch06.last_token_logits": lambda logits, lengths: logits[:, -1],  # the last position: a pad
    "ch06.mean_pool": lambda logits, lengths: logits.mean(1),  # the pads averaged in
    "ch06.laplace_log_likelihood": lambda counts, alpha: (counts / counts.sum(1, keepdim=True)).log(),  # no smoothing
}


def test_checkers_explain_the_usual_mistakes(capsys):
    check_exercise("ch06.last_token_logits", WRONG["ch06.last_token_logits"])
    check_exercise("ch06.mean_pool", WRONG["ch06.mean_pool"])
    check_exercise("ch06.laplace_log_likelihood", WRONG["ch06.laplace_log_likelihood"])
    check_exercise("ch06.laplace_log_likelihood", lambda c, a: ((c + a) / (c + a).sum(0, keepdim=True)).log())
    out = capsys.readouterr().out
    assert "padding" in out and "averages the pads" in out and "-inf" in out and "over the classes" in out
