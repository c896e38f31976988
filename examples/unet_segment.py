#!/usr/bin/env python3
"""Segment a GeoTIFF or a slide with a small PyTorch U-Net, tile by tile, seamlessly.

    python examples/unet_segment.py scene.tif labels.tif
    python examples/unet_segment.py slide.ome.tif probs.tif --probabilities --dtype uint8
    python examples/unet_segment.py --help

The image is read tile by tile with ``seamless_fast.io.ImageReader`` (only the
TIFF tiles a window meets are decoded), the U-Net runs on batches of tiles
under ``torch.inference_mode()``, and ``seamless_fast.run_pipeline`` blends
its softmax outputs as they arrive and streams the finished cells into a tiled
TIFF with ``seamless_fast.io.TiffWriter``: class labels (the arg-max of the
blended probabilities) by default, the probabilities with ``--probabilities``.

The network is defined below and has about 6600 parameters. Its weights are
random, drawn from ``--seed`` (the same seed gives the same network), unless
``--weights`` loads a ``state_dict`` or ``--train-steps`` fits it for a few
seconds to the synthetic scene of ``seamless_fast.demo``: an untrained
network shows the plumbing, not a useful segmentation.

Importing this file runs nothing: :func:`segment` is the whole job as a
function, :func:`main` the command line (exit 0: the output is complete;
2: a bad argument, one line on stderr, nothing written; 1: a failure while
running, with its traceback, nothing written).
"""

import argparse
import os
import sys
import time

import numpy as np

try:
    import torch
    from torch import nn
    from torch.nn import functional as F
except ImportError:
    if __name__ != "__main__":
        raise
    print("unet_segment.py: error: this example needs PyTorch: pip install torch==2.13.0 (the CPU build; see "
          "examples/README.md)", file=sys.stderr)
    sys.exit(2)

import seamless_fast as sf
from seamless_fast.io import ImageReader, TiffWriter, metadata_for_output

__all__ = ["UNet", "Segmenter", "UsageError", "build_model", "open_image", "plan_tiles", "make_writer",
           "segment", "main"]

CLASSES = 5  # the synthetic scene's classes (seamless_fast.demo), which --train-steps fits
PADDINGS = ("same", "valid")
# pixels a "valid" U-Net loses on each side: 2 convolutions, 2 more at half resolution (4 at full), 2 after the skip
CONTEXT = {"same": 0, "valid": 2 + 2 * 2 + 2}
DTYPES = ("uint8", "uint16", "uint32", "float16", "float32")


class UsageError(ValueError):
    """A bad argument or input, found before any tile is computed: one line, exit status 2."""


# -- the network ------------------------------------------------------------

class UNet(nn.Module):
    """A two-level U-Net: (B, C, H, W) in, (B, classes, H', W') logits out.

    Parameters
    ----------
    in_channels, classes : int
    width : int
        Channels of the first level (the second has twice as many).
    padding : {"same", "valid"}
        "same": every 3 x 3 convolution pads by 1 and H' = H (H and W must be
        even). "valid": nothing is padded and the output is the centre of the
        input, ``H' = H - 2 * context`` (H must be even), as in the original
        U-Net: every output pixel then sees real input pixels only.

    Examples
    --------
    >>> net = UNet(3, 5, padding="valid")
    >>> net.context, tuple(net(torch.zeros(1, 3, 64, 64)).shape)
    (8, (1, 5, 48, 48))
    """

    def __init__(self, in_channels, classes, width=8, padding="same"):
        super().__init__()
        if padding not in PADDINGS:
            raise ValueError(f"padding={padding!r} is not one of {PADDINGS}")
        pad = 1 if padding == "same" else 0

        def block(c_in, c_out):
            return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=pad), nn.ReLU(inplace=True),
                                 nn.Conv2d(c_out, c_out, 3, padding=pad), nn.ReLU(inplace=True))

        self.encode = block(in_channels, width)
        self.bottom = block(width, 2 * width)
        self.up = nn.ConvTranspose2d(2 * width, width, 2, stride=2)
        self.decode = block(2 * width, width)
        self.head = nn.Conv2d(width, classes, 1)
        self.context = CONTEXT[padding]

    def forward(self, x):
        skip = self.encode(x)
        deep = self.up(self.bottom(F.max_pool2d(skip, 2)))
        crop = (skip.shape[-1] - deep.shape[-1]) // 2  # 0 with "same" padding
        if crop:
            skip = skip[..., crop:-crop, crop:-crop]
        return self.head(self.decode(torch.cat([skip, deep], dim=1)))


class Segmenter:
    """The model as :func:`seamless_fast.run_pipeline` calls it: a numpy batch in, probabilities out.

    Parameters
    ----------
    net : UNet
    input_scale : float
        Multiplies the input (1 / 255 for uint8 images, so the network sees [0, 1]).
    context : int
        Pixels of real image the batches carry around each tile on every side.
        A "valid" network that needs more gets the rest by reflection at the
        tile's border.

    Calling it with a (B, C, h, w) batch of the image's dtype returns the
    (B, classes, h - 2 * context, w - 2 * context) softmax as float32 numpy,
    computed under ``torch.inference_mode()``.

    Examples
    --------
    >>> model = Segmenter(UNet(3, 5, padding="valid"), input_scale=1 / 255)
    >>> model(np.zeros((2, 3, 40, 30), np.uint8)).shape
    (2, 5, 40, 30)
    """

    def __init__(self, net, input_scale=1.0, context=0):
        self.net = net.eval()
        self.input_scale = float(input_scale)
        self.missing = net.context - context
        if self.missing < 0:
            raise ValueError(f"context={context} is more than the network reads ({net.context})")

    @torch.inference_mode()
    def __call__(self, batch):
        x = torch.from_numpy(np.asarray(batch, np.float32)) * self.input_scale
        if self.missing:  # reflection needs a side longer than the pad
            x = F.pad(x, (self.missing,) * 4, mode="reflect" if min(x.shape[-2:]) > self.missing else "replicate")
        height, width = x.shape[-2:]
        even = (height % 2, width % 2)  # the network halves once; an odd side gets one replicated row
        if any(even):
            x = F.pad(x, (0, even[1], 0, even[0]), mode="replicate")
        probabilities = self.net(x).softmax(dim=1)
        lost = 2 * self.net.context
        return probabilities[..., :height - lost, :width - lost].numpy()


def build_model(in_channels, classes=CLASSES, *, seed=0, padding="same", weights=None, train_steps=0):
    """A :class:`UNet` in eval mode, the same for the same arguments.

    Parameters
    ----------
    in_channels, classes : int
    seed : int, keyword-only
        Seeds the initial weights (torch's global random state is left as it was).
    padding : {"same", "valid"}, keyword-only
    weights : path, optional, keyword-only
        A ``state_dict`` saved with ``torch.save`` to load instead.
    train_steps : int, keyword-only
        Then fit the network for this many steps of Adam to the synthetic
        scene of :mod:`seamless_fast.demo` (3 channels, 5 classes).

    Examples
    --------
    >>> sum(p.numel() for p in build_model(3, 5, seed=0).parameters())
    6605
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = UNet(in_channels, classes, padding=padding)
        if weights is not None:
            try:
                net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
            except Exception as error:
                raise UsageError(f"--weights {weights!r} is not a state_dict of this U-Net "
                                 f"({in_channels} channels in, {classes} classes): {_one_line(error)}") from None
        if train_steps:
            if (in_channels, classes) != (3, CLASSES):
                raise UsageError(f"--train-steps fits the synthetic scene: 3 input channels and --classes "
                                 f"{CLASSES}; this image has {in_channels} channels and --classes is {classes}")
            _fit_to_scene(net, train_steps, seed)
    return net.eval()


def _fit_to_scene(net, steps, seed, crop=48, batch=4):
    """A few seconds of Adam on random crops of the demo's synthetic scene and its true classes."""
    from seamless_fast.demo import SyntheticScene

    scene, rng = SyntheticScene(1024, seed=seed), np.random.default_rng(seed)
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-2)
    net.train()
    c = net.context
    for _ in range(steps):
        corners = rng.integers(0, 1024 - crop - 2 * c, (batch, 2))
        boxes = [(y, x, y + crop + 2 * c, x + crop + 2 * c) for y, x in corners.tolist()]
        images = np.stack([np.rint(scene.read(b) * 255) / 255 for b in boxes]).transpose(0, 3, 1, 2)
        target = np.stack([scene.classes((y + c, x + c, y + c + crop, x + c + crop)) for y, x, *_ in boxes])
        loss = F.cross_entropy(net(torch.from_numpy(images.astype(np.float32))), torch.from_numpy(target))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()


# -- the three places that depend on the library's features ------------------

def open_image(path, level=0, mpp=None):
    """The :class:`~seamless_fast.io.ImageReader` of `path` at pyramid level `level` (0: full resolution),
    or at the level nearest `mpp` micrometres per pixel.

    A missing, unreadable or not-TIFF file, or a level it does not have, raises :class:`UsageError`.
    """
    try:
        return ImageReader(path, level=level, mpp=mpp, pad="reflect")
    except ValueError as error:  # missing, not a TIFF, truncated, a level it lacks: one line naming it
        raise UsageError(f"input: {_one_line(error)}") from None


def plan_tiles(image_size, tile, overlap, context):
    """The plan of the tiles, and how many pixels of image each read window carries around its tile.

    The model reads `context` pixels more than it returns on every side of a
    tile: the plan's read windows (:meth:`~seamless_fast.Plan.read_boxes`)
    are the tiles grown by it, mirrored past the image's border, and the
    blend takes the tile's box only.
    """
    try:
        plan, _ = sf.plan_regular_grid(image_size, tile, overlap, context=context)
    except ValueError as error:
        raise UsageError(f"--tile {tile} --overlap {overlap}: {_one_line(error)}") from None
    return plan, context


def make_writer(path, reader, image_size, *, labels, classes, dtype, compression, pyramid=False):
    """The :class:`~seamless_fast.io.TiffWriter` of the output, with the input's metadata carried over
    (resolution; a GeoTIFF's CRS and transform), and reduced levels if `pyramid`.

    Labels are one 2-D image; probabilities have one channel per class. The input's nodata is not
    carried over: it describes the input, and would hide a class.
    """
    try:
        dtype = sf.dtypes.output_dtype(dtype, labels=labels, classes=classes)
        metadata = metadata_for_output(reader)
        metadata.pop("nodata", None)
        return TiffWriter(path, image_size, channels=None if labels else classes, dtype=dtype,
                          compression=compression, pyramid=pyramid, resampling="mode" if labels else "mean",
                          **metadata)
    except ValueError as error:
        raise UsageError(f"output {os.fspath(path)!r}: {_one_line(error)}") from None


# -- the job ------------------------------------------------------------------

def segment(input, output, *, tile=256, overlap=64, batch_size=8, labels=True, dtype=None, classes=CLASSES,
            seed=0, padding="same", weights=None, train_steps=0, level=0, mpp=None, compression="zlib",
            pyramid=False, threads=None,
            progress=False):
    """Segment the TIFF `input` into the tiled TIFF `output`.

    Parameters
    ----------
    input, output : path
        A TIFF to read; the ``.tif``/``.tiff`` to write (it appears only once complete).
    tile, overlap, batch_size, labels, dtype, classes, seed, padding, weights, train_steps, level, mpp, compression, pyramid
        As the command line's options of the same names (``--help``).
    threads : int, optional
        ``torch.set_num_threads(threads)`` before anything runs (it stays set).
    progress : bool
        Show a progress bar (needs tqdm).

    Returns
    -------
    seamless_fast.PipelineResult
        Tiles, batches and where the time went.

    Raises
    ------
    UsageError
        For a bad argument or input, before any tile is computed; nothing is written.
    """
    for name, value, least in (("tile", tile, 1), ("overlap", overlap, 0), ("batch_size", batch_size, 1),
                               ("classes", classes, 2), ("train_steps", train_steps, 0), ("seed", seed, 0),
                               ("threads", 1 if threads is None else threads, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise UsageError(f"--{name.replace('_', '-')} {value!r} must be a whole number >= {least}")
    if not isinstance(labels, bool):
        raise UsageError(f"labels={labels!r} must be True or False")
    if padding not in PADDINGS:
        raise UsageError(f"--padding {padding!r} is not one of {', '.join(PADDINGS)}")
    _check_paths(input, output)
    if threads is not None:
        torch.set_num_threads(threads)
    if level and mpp is not None:
        raise UsageError(f"--level {level} and --mpp {mpp}: give one of them")
    reader = open_image(input, level, mpp)
    try:
        plan, context = plan_tiles(reader.shape, tile, overlap, CONTEXT[padding])
        with make_writer(output, reader, plan.image_size, labels=labels, classes=classes, dtype=dtype,
                         compression=None if compression == "none" else compression, pyramid=pyramid) as writer:
            net = build_model(reader.channels, classes, seed=seed, padding=padding, weights=weights,
                              train_steps=train_steps)  # an error here aborts the writer: no file appears
            model = Segmenter(net, _input_scale(reader.dtype), context)

            def write_cells(cells):
                for cell in cells:  # channel-first cells: (classes, h, w) probabilities or (h, w) labels
                    writer.write(cell.box, cell.data if labels else cell.data.transpose(1, 2, 0))

            return sf.run_pipeline(plan, reader.read, model, write_cells, batch_size=batch_size,
                                   channel_first=True, labels=labels, progress=progress or None)
    finally:
        reader.close()


def _check_paths(input, output):
    if not os.fspath(output).lower().endswith((".tif", ".tiff")):
        raise UsageError(f"output {os.fspath(output)!r} must end in .tif or .tiff")
    if os.path.exists(output) and os.path.exists(input) and os.path.samefile(input, output):
        raise UsageError(f"output {os.fspath(output)!r} is the input")


def _input_scale(dtype):
    """What maps the image's values to about [0, 1]: 1 / the integer maximum, 1 for floats."""
    return 1.0 / np.iinfo(dtype).max if np.dtype(dtype).kind in "iu" else 1.0


def _one_line(error):
    return " ".join(str(error).split()) or type(error).__name__


# -- the command line ---------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser():
    parser = _Parser(prog="unet_segment.py", description=__doc__.split("\n")[0],
                     epilog="Exit status: 0 the output is complete; 2 a bad argument (one line, nothing written); "
                            "1 a failure while running (nothing written).")
    parser.add_argument("input", help="input TIFF: a GeoTIFF, an OME-TIFF or other pyramidal slide, any tiled "
                                      "or striped TIFF")
    parser.add_argument("output", help="output .tif/.tiff, tiled; appears only once complete")
    level = parser.add_mutually_exclusive_group()
    level.add_argument("--level", type=int, default=0, help="pyramid level to segment (default 0, full "
                                                            "resolution)")
    level.add_argument("--mpp", type=float, help="segment the level nearest this many micrometres per pixel")
    parser.add_argument("--tile", type=int, default=256, help="tile side in pixels (default 256)")
    parser.add_argument("--overlap", type=int, default=64, help="overlap of neighbouring tiles (default 64)")
    parser.add_argument("--batch-size", type=int, default=8, help="tiles per model call (default 8)")
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("--labels", dest="labels", action="store_true", default=True,
                      help="write class labels, the arg-max of the blended probabilities (default)")
    kind.add_argument("--probabilities", dest="labels", action="store_false",
                      help="write the blended probabilities, one channel per class")
    parser.add_argument("--dtype", choices=DTYPES, help="output dtype: labels uint8 (default), uint16 or uint32; "
                        "probabilities float32 (default), float16, or uint8/uint16 (0..1 as 0..255/0..65535)")
    parser.add_argument("--classes", type=int, default=CLASSES, help=f"classes the U-Net predicts (default "
                                                                     f"{CLASSES}, at least 2)")
    parser.add_argument("--padding", choices=PADDINGS, default="same",
                        help="U-Net convolutions: 'same' (padded) or 'valid' (unpadded: reads 8 more pixels of the "
                             "image on every side of a tile than it returns; default same)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random initial weights (default 0)")
    parser.add_argument("--weights", metavar="FILE", help="load the U-Net's weights (a state_dict saved with "
                                                          "torch.save) instead of random ones")
    parser.add_argument("--train-steps", type=int, default=0, metavar="N",
                        help="first fit the U-Net for N steps to the synthetic scene of seamless_fast.demo "
                             "(3 channels, 5 classes; 300 steps take seconds; default 0: untrained)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads(N) for the model (default: torch's)")
    parser.add_argument("--compression", choices=["none", "zlib", "zstd"], default="zlib",
                        help="output compression (default zlib; zstd needs imagecodecs)")
    parser.add_argument("--pyramid", action="store_true",
                        help="also write reduced levels (GeoTIFF overviews for a georeferenced input, else SubIFDs)")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="no progress bar (the bar needs tqdm)")
    return parser


def main(argv=None):
    """Run the command line with `argv` (default ``sys.argv[1:]``); return the exit status."""
    args = build_parser().parse_args(argv)
    options = {name: value for name, value in vars(args).items() if name not in ("input", "output")}
    start = time.perf_counter()
    try:
        if args.progress:
            try:
                import tqdm  # noqa: F401
            except ImportError:
                raise UsageError("the progress bar needs tqdm: pip install tqdm, or give --no-progress") from None
        result = segment(args.input, args.output, **options)
    except UsageError as error:
        print(f"unet_segment.py: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("unet_segment.py: interrupted", file=sys.stderr)
        return 130
    print(f"wrote {args.output}: {result.tiles} tiles in {time.perf_counter() - start:.1f} s "
          f"(model {result.model.busy:.1f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
