"""The transformer family matrix: every registered family through every structural step.

Each family is a tiny random-init model built from its own transformers config (the ones the
test suite uses, ``tests/fixtures/tiny_models.py``). Per step the table gives what it removed,
as the share of parameters and MACs (per example, 10 tokens) gone, or why the family refuses it:

- heads+FFN 50%: half the attention heads and half the FFN neurons of every layer;
- vocab: the token table trimmed to the 18 tokens the data uses (text families);
- student: every other layer kept (a layer-drop student);
- hf: the FFN-pruned student exported with ``export_hf`` and reloaded by transformers, max
  |logit difference|;
- onnx: the heads+FFN-pruned model exported and scored by ONNX Runtime at 10 and 6 tokens;
- int8 / int4 / nncf: ONNX Runtime dynamic int8 and weight-only int4, NNCF static int8, each
  graph verified against the model at its precision's tolerance.

    python benchmarks/families.py --json bench-results/families.json
"""

from __future__ import annotations

import copy
import importlib.util
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
from rich.console import Console
from rich.table import Table

from _common import machine, parser, write_json
from slimkit._console import quiet_libraries

FIXTURE = Path(__file__).parents[1] / "tests" / "fixtures" / "tiny_models.py"
STEPS = ["heads+ffn 50%", "vocab", "student", "hf", "onnx", "int8", "int4", "nncf"]


def tiny_models() -> Any:
    spec = importlib.util.spec_from_file_location("tiny_models", FIXTURE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["tiny_models"] = module  # save_model records it as the factory's module
    spec.loader.exec_module(module)
    return module


def inputs(family: str, length: int = 10, batch: int = 2) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    if family == "vit":
        return (torch.randn(batch, 3, 16, 16, generator=g),)
    ids = torch.randint(2, 20, (batch, length), generator=g)
    return ids, torch.ones_like(ids)


def removed(before: torch.nn.Module, after: torch.nn.Module, x: tuple[torch.Tensor, ...]) -> str:
    from slimkit.evaluation import count_macs, count_params

    p = 1 - count_params(after) / count_params(before)
    m = 1 - count_macs(after, x) / count_macs(before, x)
    return f"-{p:.0%} params, -{m:.0%} MACs"


def run_family(family: str, work: Path) -> dict[str, str]:
    from slimkit.data.bundle import ArrayDataset, DataBundle
    from slimkit.distillation.configs import KeepEveryStudent
    from slimkit.distillation.students import build_student
    from slimkit.export import export_hf, export_onnx
    from slimkit.models.arch import Arch
    from slimkit.pruning import FfnConfig, HeadsConfig, VocabConfig, prune
    from slimkit.quantization import (
        DynamicInt8Config,
        StaticInt8Config,
        WeightOnlyInt4Config,
        quantize,
    )
    from slimkit.sessions import feeds, session

    net = tiny_models().tiny_hf(family)
    x = inputs(family)
    names = ("pixel_values",) if family == "vit" else ("input_ids", "attention_mask")
    arch = Arch(source="tiny_models:tiny_hf", kwargs={"family": family})
    out: dict[str, str] = {}

    def attempt(step: str, fn: Any) -> None:
        try:
            out[step] = fn()
        except Exception as err:  # the matrix reports a refusal as the family's answer
            out[step] = f"refused: {str(err).splitlines()[0][:90]}"

    pruned = prune(prune(copy.deepcopy(net), HeadsConfig(ratio=0.5)), FfnConfig(ratio=0.5))
    out["heads+ffn 50%"] = removed(net, pruned, x)
    if family == "vit":
        out["vocab"] = "n/a (image input)"
    else:
        batches = [((x[0], x[1]), torch.zeros(2, dtype=torch.long))]
        attempt(
            "vocab",
            lambda: removed(
                net, prune(copy.deepcopy(net), VocabConfig(unk_token=1), batches=batches), x
            ),
        )
    attempt(
        "student",
        lambda: removed(net, build_student(net, KeepEveryStudent(keep_every=2), arch, {})[0], x),
    )

    def hf() -> str:
        student = prune(copy.deepcopy(net), FfnConfig(ratio=0.5))
        student = build_student(student, KeepEveryStudent(keep_every=2), arch, {})[0]
        import transformers

        folder = export_hf(student, work / f"{family}-hf", x)
        auto = (
            transformers.AutoModelForImageClassification
            if family == "vit"
            else transformers.AutoModelForSequenceClassification
        )
        logits = auto.from_pretrained(folder).eval()(**dict(zip(names, x, strict=True))).logits
        return f"pass, max diff {float((logits - student(*x)).abs().max()):.1e}"

    attempt("hf", hf)

    def onnx() -> str:
        path = export_onnx(pruned, x, names, work / f"{family}.onnx")
        sess = session(path, 1)
        for length in (10,) if family == "vit" else (10, 6):
            given = inputs(family, length)
            got = torch.from_numpy(sess.run(None, feeds(sess, names, given))[0])
            torch.testing.assert_close(got, pruned(*given), rtol=1e-4, atol=1e-4)
        return "pass" if family == "vit" else "pass at 10 and 6 tokens"

    attempt("onnx", onnx)
    labels = torch.zeros(16, dtype=torch.long)
    batch = inputs(family, batch=16)
    data = DataBundle(
        "toy", *(ArrayDataset(batch, labels) for _ in range(3)), num_classes=3, input_names=names
    )
    for step, config in (
        ("int8", DynamicInt8Config(recover=False)),
        ("int4", WeightOnlyInt4Config(group_size=16, recover=False)),
        ("nncf", StaticInt8Config(backend="openvino", calibration_samples=16, recover=False)),
    ):

        def quantized(config: Any = config, step: str = step) -> str:
            result = quantize(copy.deepcopy(net), config, data, out_path=work / f"{family}-{step}")
            assert result.agreement is not None
            result.agreement.check(config.precision)
            return f"pass, {result.quantized_layers} layers"

        attempt(step, quantized)
    return out


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    quiet_libraries()
    families = tiny_models().HF_FAMILIES
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for family in families[:2] if args.quick else families:
            rows.append({"family": family, **run_family(family, Path(tmp))})
    table = Table(
        title="Transformer families x steps (tiny random-init configs)", title_justify="left"
    )
    for column in ("family", *STEPS):
        table.add_column(column)
    for r in rows:
        table.add_row(*(r.get(c, "-") for c in ("family", *STEPS)))
    Console(width=220).print(table)
    write_json(args.json, machine(torch.get_num_threads()), rows)


if __name__ == "__main__":
    main()
