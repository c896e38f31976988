"""The built-in default job: a synthetic scene, a context-dependent stand-in model, naive vs seamless tiling.

The scene is a procedural field of land-cover-like regions (so any window is
computed on demand and the scene is never held whole). The stand-in model
scores each class from the pixel's features *relative to the mean of the tile
it sees*, as real networks effectively do through normalisation and limited
context: the same pixel gets different scores in different tiles, so naive
tiling shows seams and blending removes them.
"""

import numpy as np

__all__ = ["SyntheticScene", "context_model", "seam_score", "write_png", "side_by_side", "run_demo"]

CLASSES = 5


class SyntheticScene:
    """A procedural (H, W, 3) float32 scene; ``read(box)`` computes any window, padding included."""

    def __init__(self, size, seed=0):
        rng = np.random.default_rng(seed)
        self.shape = (size, size)
        self.channels = 3
        # low-frequency waves decide the regions, higher ones add texture
        self._waves = [(rng.uniform(1, 6, 2) * 2 * np.pi / size, rng.uniform(0, 2 * np.pi)) for _ in range(6)]
        self._texture = [(rng.uniform(40, 120, 2) * 2 * np.pi / size, rng.uniform(0, 2 * np.pi)) for _ in range(3)]
        self._colours = rng.uniform(0.1, 0.9, (CLASSES, 3)).astype(np.float32)

    def classes(self, box):
        ylo, xlo, yhi, xhi = box
        y = np.arange(ylo, yhi, dtype=np.float32)[:, None]
        x = np.arange(xlo, xhi, dtype=np.float32)[None, :]
        field = sum(np.sin(f[0] * y + f[1] * x + phase) for f, phase in self._waves)
        return np.clip(((field + 3.0) / 6.0 * CLASSES).astype(np.int64), 0, CLASSES - 1)

    def read(self, box):
        ylo, xlo, yhi, xhi = box
        y = np.arange(ylo, yhi, dtype=np.float32)[:, None, None]
        x = np.arange(xlo, xhi, dtype=np.float32)[None, :, None]
        texture = sum(0.02 * np.sin(f[0] * y + f[1] * x + phase) for f, phase in self._texture)
        return (self._colours[self.classes(box)] + texture).astype(np.float32)


def context_model(scene):
    """A stand-in model: class scores from colour distances, shifted by each tile's own mean colour.

    Takes channel-first batches (B, 3, h, w) and returns (B, CLASSES, h, w) logits.
    """
    colours = scene._colours

    def model(batch):
        batch = np.asarray(batch, dtype=np.float32)
        context = batch.mean(axis=(2, 3), keepdims=True)
        shifted = batch + 2.0 * (context - 0.5)  # what normalising by the tile's statistics does
        distance = ((shifted[:, None] - colours[None, :, :, None, None]) ** 2).sum(axis=2)
        return -8.0 * distance
    return model


def seam_score(labels, cuts_y, cuts_x):
    """How much more often labels change across tile cuts than elsewhere (about 1: no seam).

    The rate of label changes between neighbouring pixels across the given
    cut lines, divided by the rate everywhere else.
    """
    changes_y = (labels[1:] != labels[:-1]).mean(axis=1)
    changes_x = (labels[:, 1:] != labels[:, :-1]).mean(axis=0)
    at_y = np.zeros(len(changes_y), bool)
    at_y[np.asarray(cuts_y, dtype=np.int64) - 1] = True
    at_x = np.zeros(len(changes_x), bool)
    at_x[np.asarray(cuts_x, dtype=np.int64) - 1] = True
    across = np.concatenate([changes_y[at_y], changes_x[at_x]]).mean()
    elsewhere = np.concatenate([changes_y[~at_y], changes_x[~at_x]]).mean()
    return float(across / max(elsewhere, 1e-12))


def write_png(path, rgb):
    """Write an (H, W, 3) uint8 image as PNG with nothing but zlib."""
    import struct
    import zlib

    height, width = rgb.shape[:2]
    raw = b"".join(b"\x00" + np.ascontiguousarray(row).tobytes() for row in rgb)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    with open(path, "wb") as handle:
        handle.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6))
                     + chunk(b"IEND", b""))


def side_by_side(naive, seamless, centre, half=192, scale=2):
    """An RGB picture of both label maps around `centre` (y, x), naive left, seamless right, enlarged."""
    palette = np.array([[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189],
                        [140, 86, 75], [227, 119, 194], [127, 127, 127]], np.uint8)
    cy, cx = centre
    window = np.s_[max(cy - half, 0):cy + half, max(cx - half, 0):cx + half]
    panels = [palette[labels[window] % len(palette)] for labels in (naive, seamless)]
    gap = np.full((panels[0].shape[0], 8, 3), 255, np.uint8)
    picture = np.concatenate([panels[0], gap, panels[1]], axis=1)
    return picture.repeat(scale, axis=0).repeat(scale, axis=1)


def run_demo(size, tile, overlap, out, *, progress=True):
    """The default job: segment a synthetic scene naively and seamlessly, write both and a picture; return a report.

    Writes ``naive.tif``, ``seamless.tif`` and ``naive_vs_seamless.png`` into
    the existing folder `out`, and returns the lines ``seamless-fast demo``
    prints (seam scores, time, peak memory). The scene must be larger than a
    tile, so that there are seams to score.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as out:
    ...     report = run_demo(96, 64, 16, out, progress=False)
    >>> report.splitlines()[0]
    'scene 96 x 96, tile 64, overlap 16: 4 tiles'
    """
    import os
    import resource
    import time

    from .io import TiffWriter
    from .engine.pipeline import run_pipeline
    from .plan import plan_regular_grid

    if not tile < size:
        raise ValueError(f"size={size} must be larger than tile={tile}, so that there are seams to show")
    scene = SyntheticScene(size)
    model = context_model(scene)
    shape = (size, size)
    started = time.perf_counter()

    # Naive tiling: no overlap, each tile's own arg-max pasted in place.
    naive_plan, _ = plan_regular_grid(shape, tile, 0)
    naive = np.zeros(shape, np.uint8)
    for ylo, xlo, yhi, xhi in naive_plan.tile_boxes[naive_plan.load_order].tolist():
        batch = scene.read((ylo, xlo, yhi, xhi)).transpose(2, 0, 1)[None]
        naive[ylo:yhi, xlo:xhi] = model(batch)[0].argmax(axis=0)
    naive_seconds = time.perf_counter() - started

    # Seamless: overlapping tiles, blended and arg-maxed by the pipeline, streamed to a TIFF.
    plan, _ = plan_regular_grid(shape, tile, overlap)
    seamless = np.zeros(shape, np.uint8)  # kept only to score and picture it; the TIFF is streamed
    start = time.perf_counter()
    with TiffWriter(os.path.join(out, "seamless.tif"), shape, dtype=np.uint8, compression="zlib") as writer:
        def write_cells(cells):
            for cell in cells:
                writer.write(cell.box, cell.data)
                seamless[cell.slices] = cell.data

        run_pipeline(plan, scene.read, model, write_cells, batch_size=16, channel_first=True, labels=True,
                     progress=True if progress else None)
    seamless_seconds = time.perf_counter() - start
    with TiffWriter(os.path.join(out, "naive.tif"), shape, dtype=np.uint8, compression="zlib") as writer:
        writer.write((0, 0) + shape, naive)

    naive_cuts = [sorted(set(naive_plan.tile_boxes[:, axis].tolist()) - {0}) for axis in (0, 1)]
    seamless_cuts = [sorted(set(plan.tile_boxes[:, axis].tolist()) - {0}) for axis in (0, 1)]
    corner = (naive_cuts[0][len(naive_cuts[0]) // 2], naive_cuts[1][len(naive_cuts[1]) // 2])
    png = os.path.join(out, "naive_vs_seamless.png")
    write_png(png, side_by_side(naive, seamless, corner))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return "\n".join([
        f"scene {size} x {size}, tile {tile}, overlap {overlap}: {plan.n_loads} tiles",
        f"seam score (about 1 = no seam): naive {seam_score(naive, *naive_cuts):.2f}, "
        f"seamless {seam_score(seamless, *seamless_cuts):.2f}",
        f"time: naive {naive_seconds:.1f} s, seamless {seamless_seconds:.1f} s; peak memory {peak:.0f} MiB",
        f"wrote {os.path.join(out, 'naive.tif')}, {os.path.join(out, 'seamless.tif')}, {png}",
    ])
