"""gpt2_core.instructions is a thin front: every name it exports is the one of its home module."""

from __future__ import annotations

from gpt2_core import instruction_data, instruction_eval, instruction_prompts, instructions


def test_front_reexports_the_modules():
    homes = (instruction_data, instruction_eval, instruction_prompts)
    for name in instructions.__all__:
        obj = getattr(instructions, name)
        assert any(getattr(m, name, None) is obj for m in homes), name
