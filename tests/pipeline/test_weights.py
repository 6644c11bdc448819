"""Weights from every source: torchvision's cache (real ImageNet MobileNetV2), uploads, earlier Graft models."""

import pickle
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from torchvision.models import get_model

from workers.pipeline import backbones, checkpoints, weights
from workers.pipeline.errors import WeightsUnavailable
from workers.pipeline.images import Preprocessing


def foolbox_imagenet() -> list[tuple[Path, int]]:
    import importlib.util

    # foolbox's own __init__ needs eagerpy; only its data folder is wanted, so locate it without importing.
    folder = Path(importlib.util.find_spec("foolbox").submodule_search_locations[0]) / "data"
    return [(p, int(p.stem.split("_")[-1])) for p in sorted(folder.glob("imagenet_*.jpg"))]


def test_real_imagenet_weights_load_from_the_torch_cache_and_classify_imagenet(hub_dir):
    loaded = weights.from_torchvision("mobilenet_v2", "IMAGENET1K_V1", allow_download=False)
    assert loaded.source == "torchvision:IMAGENET1K_V1"
    assert loaded.mean == pytest.approx((0.485, 0.456, 0.406))
    model = get_model("mobilenet_v2")
    model.load_state_dict(loaded.state_dict)
    model.eval()
    pre = Preprocessing(image_size=224, resize_size=256, mean=loaded.mean, std=loaded.std)
    samples = foolbox_imagenet()
    assert len(samples) == 20
    batch = torch.stack([pre.to_uint8(Image.open(p).convert("RGB")) for p, _ in samples])
    with torch.no_grad():
        top1 = model(pre.normalize(batch)).argmax(1).tolist()
    correct = sum(pred == label for pred, (_, label) in zip(top1, samples, strict=True))
    assert correct >= 16, f"{correct}/20"


def test_weights_file_is_looked_up_in_the_torch_cache(hub_dir):
    entry = backbones.weights_enum("mobilenet_v2", "IMAGENET1K_V1")
    assert backbones.cached_weights_path(entry) == hub_dir / "checkpoints" / "mobilenet_v2-b0353104.pth"


def test_uncached_weights_offline_say_which_file_to_place_where(hub_dir):
    with pytest.raises(WeightsUnavailable) as info:
        weights.from_torchvision("resnet18", "IMAGENET1K_V1", allow_download=False)
    message = str(info.value)
    assert "resnet18-f37072fd.pth" in message and str(hub_dir / "checkpoints") in message


def test_unknown_weights_name_lists_the_choices():
    with pytest.raises(WeightsUnavailable, match="IMAGENET1K_V1"):
        backbones.weights_enum("resnet18", "SUPERNET")


@pytest.mark.parametrize("fmt", ["safetensors", "pt"])
def test_uploaded_state_dict_is_checked_and_loaded(tmp_path, fmt):
    state = get_model("resnet18").state_dict()
    path = tmp_path / f"w.{fmt}"
    if fmt == "safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    loaded = weights.from_file(path, "resnet18")
    grafted = backbones.build("resnet18", 3, state_dict=loaded.state_dict)
    assert torch.equal(grafted.model.layer1[0].conv1.weight, state["layer1.0.conv1.weight"])
    assert grafted.model.fc.out_features == 3 and grafted.pretrained


def test_weights_for_another_arch_are_rejected_naming_keys(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in get_model("resnet34").state_dict().items()}, str(path))
    with pytest.raises(WeightsUnavailable, match="do not fit resnet18.*unexpected"):
        weights.from_file(path, "resnet18")
    shrunk = {k: v for k, v in get_model("resnet18").state_dict().items() if not k.startswith("layer4")}
    save_file({k: v.contiguous() for k, v in shrunk.items()}, str(path))
    with pytest.raises(WeightsUnavailable, match="missing"):
        weights.from_file(path, "resnet18")


class Exploit:
    def __reduce__(self):
        return (print, ("unpickled!",))


def test_pickled_objects_are_never_unpickled(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"fc.weight": Exploit()}))
    with pytest.raises(WeightsUnavailable):
        weights.from_file(path, "resnet18")
    assert "unpickled!" not in capsys.readouterr().out


def test_backbone_of_an_earlier_graft_model(tmp_path):
    torch.manual_seed(0)
    first = backbones.build("resnet18", 5)
    pre = Preprocessing(image_size=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    path = checkpoints.save(first, tmp_path / "m.safetensors",
                            meta={"arch": "resnet18", "classes": list("abcde"), "preprocessing": pre.to_dict()})
    loaded = weights.from_graft_checkpoint(path, "resnet18")
    assert "fc.weight" not in loaded.state_dict and loaded.mean == (0.5, 0.5, 0.5)
    second = backbones.build("resnet18", 7, state_dict=loaded.state_dict)
    assert torch.equal(second.model.layer4[1].conv2.weight, first.model.layer4[1].conv2.weight)
    assert second.model.fc.out_features == 7
    with pytest.raises(WeightsUnavailable, match="set backbone.arch"):
        weights.from_graft_checkpoint(path, "resnet34")


@pytest.mark.parametrize(
    ("arch", "head_path"),
    [("resnet18", "fc"), ("mobilenet_v3_small", "classifier.3"), ("efficientnet_b0", "classifier.1"),
     ("vit_b_16", "heads.head"), ("swin_t", "head"), ("convnext_tiny", "classifier.2"), ("densenet121", "classifier"),
     ("regnet_y_400mf", "fc"), ("mobilenet_v2", "classifier.1")],
)
def test_head_replaced_for_each_family(arch, head_path):
    with torch.device("meta"):
        grafted = backbones.build(arch, 7, dropout=0.2, hidden=32) if arch != "regnet_y_400mf" else None
    if grafted is None:
        grafted = backbones.build(arch, 7, dropout=0.2, hidden=32)
    assert grafted.head_path == head_path
    head = grafted.head
    assert [type(m).__name__ for m in head] == ["Linear", "ReLU", "Dropout", "Linear"]
    assert head[-1].out_features == 7 and head[0].out_features == 32


def test_small_backbones_produce_class_logits():
    for arch in ("resnet18", "mobilenet_v3_small", "efficientnet_b0"):
        grafted = backbones.build(arch, 4)
        grafted.model.eval()
        assert grafted.model(torch.zeros(2, 3, 32, 32)).shape == (2, 4)
