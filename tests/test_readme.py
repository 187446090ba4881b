"""The README's Python section runs as written, in a fresh process, and prints nothing to stderr.

A user's first Python session copies it; the README showing code that does not run (the
``quantize`` keywords it never mentioned) was a defect, and so was library chatter on import.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).parents[1] / "README.md"


def python_section() -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Python\n") : text.index("\n## ", text.index("## Python\n") + 1)]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the Python section holds one runnable block"
    return blocks[0]


def test_the_python_section_names_every_public_verb():
    import slimkit

    code = python_section()
    verbs = {
        "run", "Recipe", "build_model", "load_data", "train", "TrainConfig", "distill",
        "DistillConfig", "transfer_weights", "prune", "quantize", "evaluate", "auto",
        "AutoConfig", "save_model", "register_model", "list_models", "list_datasets",
        "list_steps",
    }  # fmt: skip
    assert verbs <= set(slimkit.__all__)
    missing = sorted(v for v in verbs if not re.search(rf"slimkit\.{v}[(.]", code))
    assert not missing, missing


@pytest.mark.slow
def test_the_python_section_runs_quietly(tmp_path: Path):
    script = tmp_path / "readme.py"
    script.write_text(python_section())
    env = {k: v for k, v in os.environ.items() if k != "SLIMKIT_VERBOSE"}
    # one thread, as every test has (conftest.py): a second contends with the other worker
    env |= {"SLIMKIT_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr == "", proc.stderr[-3000:]
    assert "pruned int8 onnxruntime" in proc.stdout
    assert (tmp_path / "pruned.safetensors").is_file()
    assert len(list((tmp_path / "runs").iterdir())) == 2  # the run and the search


def test_the_readme_reference_of_step_keys_is_the_generated_one(cli):
    """The reference is generated from the configs; a config change without regenerating the
    README fails here (regenerate: `slimkit list steps --keys`)."""
    from slimkit.reference import markdown

    text = README.read_text(encoding="utf-8")
    embedded = text[text.index("<!-- keys:start -->\n") + 20 : text.index("<!-- keys:end -->")]
    assert embedded == markdown()
    printed = cli("list", "steps", "--keys")
    assert printed.code == 0 and printed.out.strip() == markdown().strip()
    for title in ("`prune: {method: n:m}`", "`quantize: {mode: static-int8}`", "`TrainConfig`"):
        assert f"#### {title}" in embedded
