"""The job of a partitioned run: what every part must agree on, checked on the way in and out of a store."""

from dataclasses import asdict, dataclass, fields

from .._validate import as_pair, as_positive_int, as_triple, check_area, check_bool
from ..plan import plan_regular_grid
from ..plan._input import check_context_scale
from ..plan._volume import is_volume_size
from ..windows import WINDOWS
from .partition import partition_plan

__all__ = ["Job"]

_OPTIONAL = {"context": 0, "output_scale": 1}  # left out of the JSON when every axis has this value


@dataclass(frozen=True)
class Job:
    """What every part of a partitioned run must agree on: from it each part rebuilds the same plan.

    Parameters
    ----------
    image_size, tile_size, overlap
        As for :func:`~seamless_fast.plan_regular_grid`: pairs, or ``(z, y,
        x)`` triples for a volume (its `image_size` has three sides; a
        volume job takes no `area` and no `output_scale`, and its parts keep
        channel-last voxels).
    parts : int
        Bands of tile rows (slabs of tile layers for a volume) the plan is cut into.
    window : str
        One of the built-in separable windows.
    area : str, optional
        The area as hex WKB (exact, unlike WKT), see :meth:`from_options`.
    labels : bool
        Parts keep arg-max labels instead of values.
    channel_first : bool
        Layout of the model's outputs.
    chunk : int
        Chunk side of the stored rows (and of a zarr output); of a volume's
        stored voxels in y and x, at most 64.
    context, output_scale : (int, int) or (int, int, int)
        As for :func:`~seamless_fast.plan_regular_grid`: image size, tile,
        overlap and area are in input pixels, the stored rows and the output
        in output pixels. Recorded in the store only when not (0, 0) and
        (1, 1), so that stores made before these options open unchanged.
    """

    image_size: tuple
    tile_size: tuple
    overlap: tuple
    parts: int
    window: str = "pyramid"
    area: str = None
    labels: bool = False
    channel_first: bool = True
    chunk: int = 512
    context: tuple = (0, 0)
    output_scale: tuple = (1, 1)

    @classmethod
    def from_options(cls, image_size, tile_size, overlap, *, parts, area=None, window="pyramid", labels=False,
                     channel_first=True, chunk=512, context=0, output_scale=1):
        """Validate the options and build a Job (`area` a shapely geometry in (y, x) order, or None)."""
        job = cls._checked(image_size, tile_size, overlap, parts=parts, area=area, window=window, labels=labels,
                           channel_first=channel_first, chunk=chunk, context=context, output_scale=output_scale)
        job.partition()  # raises now, naming the bad option, rather than in every part
        return job

    @classmethod
    def _checked(cls, image_size, tile_size, overlap, *, parts, area, window, labels, channel_first, chunk,
                 context=0, output_scale=1):
        """Every option checked on its own (the partition is not made)."""
        import shapely

        if is_volume_size(image_size):
            return cls._checked_volume(image_size, tile_size, overlap, parts=parts, area=area, window=window,
                                       labels=labels, channel_first=channel_first, chunk=chunk, context=context,
                                       output_scale=output_scale)
        image_size = as_pair(image_size, "image_size", minimum=1)
        tile_size, overlap = as_pair(tile_size, "tile_size", minimum=1), as_pair(overlap, "overlap", minimum=0)
        context, output_scale = check_context_scale(context, output_scale, tile_size=tile_size, overlap=overlap)
        area = check_area(area, image_size)
        _check_window(window)
        return cls(image_size=image_size, tile_size=tile_size, overlap=overlap, parts=as_positive_int(parts, "parts"),
                   window=window, area=None if area is None else shapely.to_wkb(area, hex=True),
                   labels=check_bool(labels, "labels"), channel_first=check_bool(channel_first, "channel_first"),
                   chunk=as_positive_int(chunk, "chunk"), context=context, output_scale=output_scale)

    @classmethod
    def _checked_volume(cls, image_size, tile_size, overlap, *, parts, area, window, labels, channel_first, chunk,
                        context, output_scale):
        if area is not None:
            raise ValueError("area applies to 2-D images; a volume job takes none")
        if any(v != 1 for v in (output_scale if isinstance(output_scale, (tuple, list)) else (output_scale,))):
            raise ValueError(f"output_scale={output_scale!r} applies to 2-D images; a volume job takes 1")
        tile_size, overlap = as_triple(tile_size, "tile_size", minimum=1), as_triple(overlap, "overlap", minimum=0)
        if any(o >= t for o, t in zip(overlap, tile_size)):
            raise ValueError(f"overlap={overlap} must be smaller than tile_size={tile_size} on every axis")
        _check_window(window)
        return cls(image_size=as_triple(image_size, "image_size", minimum=1), tile_size=tile_size, overlap=overlap,
                   parts=as_positive_int(parts, "parts"), window=window, labels=check_bool(labels, "labels"),
                   channel_first=check_bool(channel_first, "channel_first"), chunk=as_positive_int(chunk, "chunk"),
                   context=as_triple(context, "context", minimum=0), output_scale=(1, 1, 1))

    @property
    def volume(self):
        """Whether the job is a volume's (a (D, H, W) image size)."""
        return len(self.image_size) == 3

    def plan(self):
        """The whole run's plan."""
        import shapely

        if self.volume:
            plan, _ = plan_regular_grid(self.image_size, self.tile_size, self.overlap, window=self.window,
                                        context=self.context)
            return plan

        area = None if self.area is None else shapely.from_wkb(self.area)
        # parts are bands of tile rows, and the store's outputs are written row by row
        plan, _ = plan_regular_grid(self.image_size, self.tile_size, self.overlap, area, window=self.window,
                                    context=self.context, output_scale=self.output_scale, traverse="rows")
        return plan

    def partition(self):
        return partition_plan(self.plan(), self.parts)

    def to_json(self):
        data = {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}
        for key, default in _OPTIONAL.items():
            if all(value == default for value in data[key]):
                del data[key]
        return data

    @classmethod
    def from_json(cls, data):
        """The Job of :meth:`to_json`'s `data`, every attribute checked as :meth:`from_options` checks it.

        The partition is not made: :meth:`partition` raises if it cannot be.
        """
        names = sorted(field.name for field in fields(cls))
        if not isinstance(data, dict) or not set(names) - set(_OPTIONAL) <= set(data) <= set(names):
            raise ValueError(f"job attributes {sorted(data) if isinstance(data, dict) else data!r}; expected {names}"
                             f" ({' and '.join(_OPTIONAL)} may be left out)")
        area = data["area"]
        geometry = None
        if area is not None:
            import shapely

            try:
                geometry = shapely.from_wkb(area) if isinstance(area, str) else None
            except Exception:  # shapely raises its own errors for bad WKB
                geometry = None
            if geometry is None:
                raise ValueError(f"area={str(area)[:60]!r} is not a geometry in hex WKB")
        options = {key: value for key, value in data.items() if key not in ("image_size", "tile_size", "overlap")}
        job = cls._checked(data["image_size"], data["tile_size"], data["overlap"], **dict(options, area=geometry))
        if job.area != area:
            raise ValueError(f"area={str(area)[:60]!r} is not the hex WKB this store would hold")
        return job


def _check_window(window):
    if not isinstance(window, str) or window not in WINDOWS:
        raise ValueError(f"window={window!r}: partitioned runs take a built-in window, one of {sorted(WINDOWS)}")
