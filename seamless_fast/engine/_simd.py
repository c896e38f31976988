"""Vector code that numba's loops do not lead LLVM to: the arg-max over channels, 8 pixels at a time,
and float16 to float32 by the processor's own instruction.

Two numba loops behind the arg-max came out slow. With interleaved
channels, LLVM de-interleaves a pixel's channels lane by lane (2 ns a pixel
for 8 channels here) or, for a channel count known only at run time, not at
all. With channel planes and a running maximum kept in scratch rows, it
turns "store the old value back unless the new one wins" into masked stores,
which AMD processors run as microcode (0.5 ns per pixel and channel).

Here the loops are written as LLVM vector instructions: 8 pixels' channels are
loaded (one vector a plane, or one vector a pixel and the usual 8 x 8
transpose: unpack, shuffle, swap halves), reduced by a tournament (3 rounds,
not 7 dependent steps) and the running (maximum, label) of 8 pixels stays in
registers. ``shufflevector`` is portable; on AVX it becomes
vunpcklps/vshufps/vperm2f128.

Ties and NaN follow np.argmax: in each comparison the later channel wins only
where it is larger than the running maximum, or NaN where that is not.

numba's on-disk cache of a kernel is keyed on the file that defines it, so the
kernels of `_kernels` that use this code are not recompiled when only this
file changes: touch `_kernels.py` after editing it (an installed release
replaces both files).
"""

import math

import numba
from llvmlite import binding, ir
from numba import types
from numba.core import cgutils
from numba.core.extending import intrinsic

LANES = 8  # pixels per block, and channels per interleaved group

_UNPACK = ([0, 8, 1, 9, 4, 12, 5, 13], [2, 10, 3, 11, 6, 14, 7, 15])
_PAIRS = ([0, 1, 8, 9, 4, 5, 12, 13], [2, 3, 10, 11, 6, 7, 14, 15])
_HALVES = ([0, 1, 2, 3, 8, 9, 10, 11], [4, 5, 6, 7, 12, 13, 14, 15])
_FLOATS = (types.float32, types.float64)


def _shuffle(builder, a, b, mask):
    return builder.shuffle_vector(a, b, ir.Constant(ir.VectorType(ir.IntType(32), LANES), mask))


def _transpose(builder, rows):
    """Eight vectors, one pixel's 8 channels each, to eight channel vectors, one lane a pixel."""
    unpacked = [_shuffle(builder, rows[q], rows[q + 1], mask) for q in range(0, LANES, 2) for mask in _UNPACK]
    # unpacked[2 m + h]: pixels 2m, 2m + 1 interleaved, channels {0, 1, 4, 5} (h = 0) or {2, 3, 6, 7} (h = 1)
    quads = [_shuffle(builder, unpacked[q + h], unpacked[q + h + 2], mask)
             for q in (0, 4) for h in (0, 1) for mask in _PAIRS]
    # quads[4 g + c]: channels c and c + 4 of pixels 4g .. 4g + 3
    return ([_shuffle(builder, quads[c], quads[c + 4], _HALVES[0]) for c in range(4)]
            + [_shuffle(builder, quads[c], quads[c + 4], _HALVES[1]) for c in range(4)])


def _takes(builder, v, best):
    """Lanes where v replaces the running maximum: larger, or NaN where the maximum is not."""
    return builder.and_(builder.fcmp_unordered(">", v, best), builder.fcmp_ordered("ord", best, best))


def _merge(builder, running, challenger):
    (best, label), (v, v_label) = running, challenger
    takes = _takes(builder, v, best)
    return builder.select(takes, v, best), builder.select(takes, v_label, label)


def _tournament(builder, contenders):
    """(maximum, label) of (value, label) vectors in channel order, pairwise in rounds."""
    while len(contenders) > 1:
        merged = [_merge(builder, a, b) for a, b in zip(contenders[::2], contenders[1::2])]
        contenders = merged + contenders[len(merged) * 2:]
    return contenders[0]


def _splat(builder, vector, scalar):
    one = builder.insert_element(ir.Constant(vector, ir.Undefined), scalar, ir.Constant(ir.IntType(32), 0))
    return _shuffle(builder, one, ir.Constant(vector, ir.Undefined), [0] * LANES)


class _Kernel:
    """What both intrinsics share: the vector type, the rows of values and labels, loads and stores."""

    def __init__(self, context, builder, sig, args):
        values_ty, label_ty = sig.args[0], sig.args[-1]
        self.builder = builder
        self.intp = context.get_value_type(types.intp)
        self.element = context.get_value_type(values_ty.dtype)
        self.vector = ir.VectorType(self.element, LANES)
        values = context.make_array(values_ty)(context, builder, args[0])
        label = context.make_array(label_ty)(context, builder, args[-1])
        self.shape = cgutils.unpack_tuple(builder, values.shape)
        row = context.cast(builder, args[1], sig.args[1], types.intp)
        self.blocks = context.cast(builder, args[2], sig.args[2], types.intp)
        # C-contiguous: row `row` of plane p starts at (p x rows + row) x elements
        self.plane_elements = builder.mul(self.shape[1], self.shape[2])
        self.values_row = builder.gep(values.data, [builder.mul(row, self.shape[2])])
        label_width = cgutils.unpack_tuple(builder, label.shape)[1]
        self.label_row = builder.gep(label.data, [builder.mul(row, label_width)])

    def integer(self, value):
        return ir.Constant(self.intp, value)

    def load(self, offset):
        pointer = self.builder.gep(self.values_row, [offset])
        return self.builder.load(self.builder.bitcast(pointer, self.vector.as_pointer()), align=1)

    def splat(self, value):
        """A vector of one constant."""
        return ir.Constant(self.vector, [value] * LANES)

    def label_vector(self, channel):
        """The label vector of a channel number given as an intp value."""
        return _splat(self.builder, self.vector, self.builder.sitofp(channel, self.element))

    def store(self, block, labels):
        pointer = self.builder.gep(self.label_row, [self.builder.mul(block, self.integer(LANES))])
        self.builder.store(labels, self.builder.bitcast(pointer, self.vector.as_pointer()), align=1)

    def running(self):
        return _Running(self.builder, self.vector)


class _Running:
    """The running (maximum, label) vectors of a block, in allocas (LLVM keeps them in registers)."""

    def __init__(self, builder, vector):
        self.builder = builder
        self.slots = cgutils.alloca_once(builder, vector), cgutils.alloca_once(builder, vector)

    def set(self, pair):
        for value, slot in zip(pair, self.slots):
            self.builder.store(value, slot)

    def merge(self, challenger):
        """The challenger (value, label) vectors, later in channel order, against the running ones."""
        self.set(_merge(self.builder, tuple(self.builder.load(slot) for slot in self.slots), challenger))

    def label(self):
        return self.builder.load(self.slots[1])


def _typed(values, row, blocks, label, *counts):
    return (isinstance(values, types.Array) and values.ndim == 3 and values.layout == "C"
            and values.dtype in _FLOATS and isinstance(label, types.Array) and label.ndim == 2
            and label.layout == "C" and label.dtype == values.dtype
            and all(isinstance(i, types.Integer) for i in (row, blocks) + counts))


@intrinsic
def argmax_planes_blocks(typingctx, values, row, blocks, label):
    """label[row, 8 b + j] = arg-max over the planes of values[:, row, 8 b + j], for b < blocks, j < 8.

    values: C-contiguous (planes, rows, elements) floats; label: C-contiguous
    (rows, width) of the same floats, labels written as 0.0, 1.0, ... No bounds
    are checked: the caller makes sure that 8 x blocks pixels fit in both rows.
    """
    if not _typed(values, row, blocks, label):
        return None

    def codegen(context, builder, sig, args):
        k = _Kernel(context, builder, sig, args)
        running = k.running()
        plane_label = cgutils.alloca_once(builder, k.vector)
        with cgutils.for_range(builder, k.blocks) as block_loop:
            first = builder.mul(block_loop.index, k.integer(LANES))
            running.set((k.load(first), k.splat(0.0)))
            builder.store(k.splat(0.0), plane_label)
            with cgutils.for_range_slice(builder, k.integer(1), k.shape[0], k.integer(1), intp=k.intp) as (plane, _):
                v = k.load(builder.add(first, builder.mul(plane, k.plane_elements)))
                this_label = builder.fadd(builder.load(plane_label), k.splat(1.0))
                builder.store(this_label, plane_label)
                running.merge((v, this_label))
            k.store(block_loop.index, running.label())
        return context.get_dummy_value()

    return types.void(values, row, blocks, label), codegen


@intrinsic
def argmax_interleaved_blocks(typingctx, values, row, blocks, n, label):
    """label[row, 8 b + j] = arg-max over the n channels of pixel 8 b + j of values[0, row], for b < blocks.

    Channels c of pixel j are values[0, row, j n + c]. Groups of 8 channels
    are loaded as one vector a pixel and transposed; with fewer than 8
    channels a pixel's vector runs into the next pixel's (those lanes are set
    to -inf), and from 8 on the last group starts at channel n - 8 (channels
    met twice change nothing). So the caller makes sure that the loads stay in
    the row: (8 blocks - 1) n + max(n, 8) <= elements; and 8 x blocks <= the
    label row's width.
    """
    if not _typed(values, row, blocks, label, n):
        return None

    def codegen(context, builder, sig, args):
        k = _Kernel(context, builder, sig, args)
        n_ = context.cast(builder, args[3], sig.args[3], types.intp)
        groups = builder.udiv(builder.add(n_, k.integer(LANES - 1)), k.integer(LANES))
        last_start = builder.sub(n_, k.integer(LANES))

        def group(first, g, masked):
            """(maximum, label) over the channels of group g of the block's pixels starting at element first;
            with `masked` (fewer than 8 channels, one group) lanes from n on are -inf."""
            start = builder.mul(g, k.integer(LANES))
            start = k.integer(0) if masked else builder.select(builder.icmp_signed("<", start, last_start), start,
                                                             last_start)
            offsets = [builder.add(first, builder.add(builder.mul(k.integer(q), n_), start)) for q in range(LANES)]
            channels = _transpose(builder, [k.load(offset) for offset in offsets])
            if masked:
                channels = [builder.select(builder.icmp_signed("<", k.integer(c), n_), channel, k.splat(-math.inf))
                            for c, channel in enumerate(channels)]
            best, local = _tournament(builder, [(channel, k.splat(float(c))) for c, channel in enumerate(channels)])
            return best, builder.fadd(local, k.label_vector(start))

        def blocks_loop(masked):
            running = k.running()
            with cgutils.for_range(builder, k.blocks) as block_loop:
                first = builder.mul(block_loop.index, builder.mul(n_, k.integer(LANES)))
                running.set(group(first, k.integer(0), masked))
                if not masked:
                    with cgutils.for_range_slice(builder, k.integer(1), groups, k.integer(1), intp=k.intp) as (g, _):
                        running.merge(group(first, g, masked))
                k.store(block_loop.index, running.label())

        with builder.if_else(builder.icmp_signed("<", n_, k.integer(LANES))) as (fewer, more):
            with fewer:
                blocks_loop(masked=True)
            with more:
                blocks_loop(masked=False)
        return context.get_dummy_value()

    return types.void(values, row, blocks, n, label), codegen


def _half_in_hardware():
    """Whether LLVM turns a float16 to float32 vector conversion into one instruction in numba's code here:
    an x86 processor with F16C, and numba compiling for this very processor (NUMBA_CPU_NAME and
    NUMBA_CPU_FEATURES unset). Elsewhere LLVM could call a runtime helper that numba does not link."""
    if numba.config.CPU_NAME is not None or numba.config.CPU_FEATURES is not None:
        return False
    try:
        return bool(binding.get_host_cpu_features().get("f16c", False))
    except RuntimeError:  # llvmlite cannot read the features of every host
        return False


HALF_IN_HARDWARE = _half_in_hardware()


@intrinsic
def half_to_float_blocks(typingctx, bits, out, blocks):
    """out[:8 blocks] = the float16 values whose bits are bits[:8 blocks] (fpext <8 x half> to <8 x float>,
    vcvtph2ps on x86 with F16C). bits: C-contiguous uint16; out: C-contiguous float32. No bounds are
    checked: the caller makes sure that both hold 8 x blocks values."""
    if not (isinstance(bits, types.Array) and bits.ndim == 1 and bits.layout == "C" and bits.dtype == types.uint16
            and isinstance(out, types.Array) and out.ndim == 1 and out.layout == "C"
            and out.dtype == types.float32 and isinstance(blocks, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        bits_arr = context.make_array(sig.args[0])(context, builder, args[0])
        out_arr = context.make_array(sig.args[1])(context, builder, args[1])
        count = context.cast(builder, args[2], sig.args[2], types.intp)
        intp = context.get_value_type(types.intp)
        halves = ir.VectorType(ir.IntType(16), LANES)
        floats = ir.VectorType(ir.FloatType(), LANES)
        with cgutils.for_range(builder, count) as loop:
            first = builder.mul(loop.index, ir.Constant(intp, LANES))
            source = builder.bitcast(builder.gep(bits_arr.data, [first]), halves.as_pointer())
            values = builder.bitcast(builder.load(source, align=1), ir.VectorType(ir.HalfType(), LANES))
            target = builder.bitcast(builder.gep(out_arr.data, [first]), floats.as_pointer())
            builder.store(builder.fpext(values, floats), target, align=1)
        return context.get_dummy_value()

    return types.void(bits, out, blocks), codegen
