"""Vector code numba's loops do not lead LLVM to: the arg-max over 8 interleaved channels.

For pixels whose 8 channels sit next to each other, numba's loop over the
channels of one pixel is vectorised by LLVM with a de-interleave it builds
lane by lane (2 ns a pixel here). Written out as the usual 8 x 8 transpose
(unpack, shuffle, swap halves: 24 shuffles for 8 pixels) and a tournament
over the channels (3 rounds instead of 7 dependent steps), the same arg-max
takes 1 ns a pixel. The shuffles are LLVM ``shufflevector`` instructions, so
the code is portable; on AVX it becomes vunpcklps/vshufps/vperm2f128.
"""

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.extending import intrinsic

LANES = 8  # pixels per block, and channels

_UNPACK = ([0, 8, 1, 9, 4, 12, 5, 13], [2, 10, 3, 11, 6, 14, 7, 15])
_PAIRS = ([0, 1, 8, 9, 4, 5, 12, 13], [2, 3, 10, 11, 6, 7, 14, 15])
_HALVES = ([0, 1, 2, 3, 8, 9, 10, 11], [4, 5, 6, 7, 12, 13, 14, 15])


def _transpose(builder, rows):
    """Eight <8 x float> rows (one pixel's channels each) to eight channel vectors (one lane a pixel)."""
    def shuffle(a, b, mask):
        return builder.shuffle_vector(a, b, ir.Constant(ir.VectorType(ir.IntType(32), LANES), mask))

    unpacked = [shuffle(rows[q], rows[q + 1], mask) for q in range(0, LANES, 2) for mask in _UNPACK]
    # unpacked[2 m + h]: rows 2m, 2m+1 interleaved, channels {0, 1, 4, 5} (h = 0) or {2, 3, 6, 7} (h = 1)
    quads = []
    for q in (0, 4):
        for h in (0, 1):
            quads += [shuffle(unpacked[q + h], unpacked[q + h + 2], mask) for mask in _PAIRS]
    # quads[4 g + c]: channels c and c + 4 of pixels 4g .. 4g + 3, for c < 4
    low = [shuffle(quads[c], quads[c + 4], _HALVES[0]) for c in range(4)]
    high = [shuffle(quads[c], quads[c + 4], _HALVES[1]) for c in range(4)]
    return low + high


def _tournament(builder, channels, vector):
    """Running (maximum, label) over the channel vectors, pairwise: in each pair the later channel wins
    where it is larger or the first NaN (v > best unordered, best not NaN), as np.argmax."""
    contenders = [(v, ir.Constant(vector, [float(c)] * LANES)) for c, v in enumerate(channels)]
    while len(contenders) > 1:
        winners = []
        for (best, label), (v, v_label) in zip(contenders[::2], contenders[1::2]):
            takes = builder.and_(builder.fcmp_unordered(">", v, best), builder.fcmp_ordered("ord", best, best))
            winners.append((builder.select(takes, v, best), builder.select(takes, v_label, label)))
        contenders = winners
    return contenders[0][1]


@intrinsic
def argmax8_blocks(typingctx, values, row, blocks, label):
    """label[row, 8 b + j] = arg-max over channels of pixel 8 b + j of values[0, row], for b < blocks.

    values: C-contiguous (P, rows, elements) floats with 8 channels a pixel;
    label: C-contiguous (rows, pixels) of the same floats (labels as 0.0 .. 7.0).
    No bounds are checked here: the caller makes sure that 64 x blocks
    elements of values and 8 x blocks of label fit in their rows.
    """
    floats = (types.float32, types.float64)
    if not (isinstance(values, types.Array) and values.ndim == 3 and values.layout == "C"
            and values.dtype in floats and isinstance(label, types.Array) and label.ndim == 2
            and label.layout == "C" and label.dtype == values.dtype
            and isinstance(row, types.Integer) and isinstance(blocks, types.Integer)):
        return None
    signature = types.void(values, row, blocks, label)

    def codegen(context, builder, sig, args):
        values_ty, row_ty, blocks_ty, label_ty = sig.args
        intp = context.get_value_type(types.intp)
        element = context.get_value_type(values_ty.dtype)
        vector = ir.VectorType(element, LANES)
        row_ = context.cast(builder, args[1], row_ty, types.intp)
        blocks_ = context.cast(builder, args[2], blocks_ty, types.intp)
        values_arr = context.make_array(values_ty)(context, builder, args[0])
        label_arr = context.make_array(label_ty)(context, builder, args[3])
        # C-contiguous: row `row` of plane 0 starts `row` x (last extent) elements in
        values_row = builder.gep(values_arr.data, [builder.mul(row_, _last_extent(builder, values_arr))])
        label_row = builder.gep(label_arr.data, [builder.mul(row_, _last_extent(builder, label_arr))])
        with cgutils.for_range(builder, blocks_) as loop:
            first = builder.mul(loop.index, ir.Constant(intp, LANES * LANES))
            pixels = [builder.gep(values_row, [builder.add(first, ir.Constant(intp, LANES * q))]) for q in range(LANES)]
            rows = [builder.load(builder.bitcast(pixel, vector.as_pointer()), align=1) for pixel in pixels]
            labels = _tournament(builder, _transpose(builder, rows), vector)
            target = builder.gep(label_row, [builder.mul(loop.index, ir.Constant(intp, LANES))])
            builder.store(labels, builder.bitcast(target, vector.as_pointer()), align=1)
        return context.get_dummy_value()

    return signature, codegen


def _last_extent(builder, array):
    return cgutils.unpack_tuple(builder, array.shape)[-1]
