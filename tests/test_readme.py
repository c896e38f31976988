"""Every Python block of the README runs, with its placeholders (files, a model, a package) made by the test.

A block without an entry in SETUP fails `test_every_block_is_tested`, so the README cannot gain an
example that nobody runs.
"""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def readme_blocks():
    """(heading, code) of every ```python block, the heading being the last one above it."""
    blocks, heading, fence, code = [], None, None, []
    for line in (ROOT / "README.md").read_text().splitlines():
        if fence is None:
            if line.startswith("```"):
                fence, code = line[3:].strip(), []
            elif line.startswith("#"):
                heading = line.lstrip("#").strip()
        elif line.startswith("```"):
            if fence == "python":
                blocks.append((heading, "\n".join(code) + "\n"))
            fence = None
        else:
            code.append(line)
    return blocks


def _write_scene(path, shape=(700, 600, 3), **options):
    import tifffile

    image = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    tifffile.imwrite(path, image, **options)
    return image


MODELS = '''
import numpy as np

def segmenter():
    """A stand-in for a real model: (B, 3, h, w) in, (B, 4, h, w) logits out."""
    weights = np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3)
    return lambda batch: np.einsum("kc,bchw->bkhw", weights, batch.astype(np.float32) / 255)
'''

UNET = '''
import torch

class UNet(torch.nn.Module):
    """Two convolutions: enough to be a real network of the README's shape."""

    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                                        torch.nn.Conv2d(8, 4, 1))

    def forward(self, x):
        return self.body(x)
'''


def _package(folder, extra=""):
    package = folder / "mypackage"
    package.mkdir(exist_ok=True)
    (package / "__init__.py").write_text("")
    (package / "models.py").write_text(MODELS + extra)


def setup_quick_start(folder):
    return {}


def check_quick_start(namespace, folder):
    labels = namespace["labels"]
    assert labels.shape == (5_000, 4_000) and labels.max() == 4


def setup_pytorch(folder):
    torch = pytest.importorskip("torch")
    _package(folder, UNET)
    sys.path.insert(0, str(folder))
    sys.modules.pop("mypackage", None)
    sys.modules.pop("mypackage.models", None)
    from mypackage.models import UNet

    torch.manual_seed(0)
    torch.save(UNet().state_dict(), folder / "unet.pt")
    _write_scene(folder / "slide.ome.tif", tile=(128, 128), compression="zlib", metadata={"axes": "YXS"})
    return {}


def check_pytorch(namespace, folder):
    import tifffile

    labels = tifffile.imread(folder / "labels.tif")
    assert labels.shape == (700, 600) and labels.dtype == np.uint8 and labels.max() <= 3


def setup_tifffile(folder):
    image = _write_scene(folder / "scene.tif")

    def my_model(window):
        return np.stack([window[..., 0], window[..., 1], 255 - window[..., 2]], axis=-1).astype(np.float32)

    return {"my_model": my_model, "expected_max": int(image.shape[-1]) - 1}


def check_tifffile(namespace, folder):
    import tifffile

    labels = tifffile.imread(folder / "labels.tif")
    assert labels.shape == (700, 600) and labels.max() == 2


def setup_push(folder):
    import seamless_fast as sf

    def my_batches(plan):
        boxes = [tuple(int(v) for v in b) for b in plan.tile_boxes[plan.load_order]]
        for start in range(0, len(boxes), 8):
            batch = [np.full((3, b[2] - b[0], b[3] - b[1]), 0.5, np.float32) for b in boxes[start:start + 8]]
            yield np.stack(batch)

    assert sf  # the block imports it itself
    return {"my_batches": my_batches}


def check_push(namespace, folder):
    out = np.load(folder / "probs.npy")
    assert out.shape == (3, 3_000, 2_000) and np.allclose(out, 0.5)


def setup_memory(folder):
    import seamless_fast as sf

    return {"sf": sf}


def check_memory(namespace, folder):
    plan, sf = namespace["plan"], namespace["sf"]
    assert plan.image_size == (40000, 200000)
    assert plan.traverse == "rows" and len(plan.stripes) > 1  # vertical stripes under the budget
    assert sf.analyse_plan(plan, channels=3).buffer_bytes <= 256 * 2**20


def setup_volumes(folder):
    nibabel = pytest.importorskip("nibabel")
    volume = np.random.default_rng(2).random((40, 150, 140), dtype=np.float32)
    nibabel.save(nibabel.Nifti1Image(volume.transpose(2, 1, 0), np.diag([0.8, 0.8, 2.0, 1.0])),
                 str(folder / "ct.nii.gz"))

    def model(batch):
        """(B, 1, d, h, w) -> (B, 3, d, h, w): three classes from the intensity."""
        return np.concatenate([batch, 1 - batch, np.full_like(batch, 0.5)], axis=1)

    return {"model": model}


def check_volumes(namespace, folder):
    from seamless_fast.io import VolumeReader

    with VolumeReader(folder / "labels.zarr") as labels, VolumeReader(folder / "ct.nii.gz") as ct:
        assert labels.shape == (40, 150, 140) and labels.dtype == np.uint8
        assert labels.spacing == ct.spacing and np.allclose(ct.spacing, (2.0, 0.8, 0.8))  # float32 in NIfTI
        written, values = labels.read((0, 0, 0, 40, 150, 140))[..., 0], ct.read((0, 0, 0, 40, 150, 140))[..., 0]
    # the model is voxel-wise, so the blend changes nothing: class 0 above 0.5, 1 below (up to float rounding)
    clear = np.abs(values - 0.5) > 1e-3
    assert np.array_equal(written[clear], np.where(values > 0.5, 0, 1)[clear])


SETUP = {
    "Quick start": (setup_quick_start, check_quick_start),
    "With PyTorch and a TIFF, the whole job in one call": (setup_pytorch, check_pytorch),
    "With your own tifffile code": (setup_tifffile, check_tifffile),
    "Pushing tiles yourself": (setup_push, check_push),
    "Memory": (setup_memory, check_memory),
    "Volumes (CT, MRI, light-sheet and electron microscopy)": (setup_volumes, check_volumes),
    "Beyond one machine: partitioned runs (SLURM arrays, Dask)": None,  # a script: test_dask_block
}


def test_every_block_is_tested():
    headings = [heading for heading, _ in readme_blocks()]
    assert sorted(headings) == sorted(SETUP), "a README Python block without a test, or a test without a block"


@pytest.mark.parametrize("heading", [h for h, entry in SETUP.items() if entry is not None])
def test_block_runs(heading, tmp_path, monkeypatch):
    code = dict(readme_blocks())[heading]
    setup, check = SETUP[heading]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    namespace = {"__name__": "__readme__"}
    namespace.update(setup(tmp_path))
    exec(compile(code, f"README.md: {heading}", "exec"), namespace)
    check(namespace, tmp_path)


@pytest.mark.slow
def test_dask_block_runs_as_pasted(tmp_path):
    pytest.importorskip("distributed")
    code = dict(readme_blocks())["Beyond one machine: partitioned runs (SLURM arrays, Dask)"]
    (tmp_path / "run_parts.py").write_text(code)
    _package(tmp_path)
    _write_scene(tmp_path / "scene.tif", shape=(900, 700, 3), tile=(128, 128))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(tmp_path)]))
    done = subprocess.run([sys.executable, "run_parts.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    import tifffile

    labels = tifffile.imread(tmp_path / "scene_labels.tif")
    assert labels.shape == (900, 700) and labels.max() <= 3
    assert "bytes at seams" in done.stdout


def test_readme_names_the_two_commands():
    text = (ROOT / "README.md").read_text()
    assert 'pip install -e ".[cli]" && seamless-fast demo' in text
    assert 'pip install -e ".[test]" && python -m pytest' in text
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python -m pytest" in ci
