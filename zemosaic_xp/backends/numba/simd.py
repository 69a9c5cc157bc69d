"""Vector operations the kernels need and numba's LLVM does not emit by itself.

:func:`count_below_8` and :func:`count_at_most_8` count, in one vector compare, how
many of 8 consecutive float32 samples of a C-contiguous 2-D array lie below (at most)
a float64 bound: the same comparisons as ``x < bound`` and ``x <= bound`` in numba
(each sample widened to float64, an ordered compare: NaN on either side counts
nothing), so a loop of eight scalar compares can be replaced bit for bit. LLVM fully
unrolls such a loop of eight and then leaves it scalar (16 loads, conversions,
``ucomisd`` and ``sbb`` for the two counts of the PixInsight WSC's window, ~40 % of
its kernel's time, measured with ``perf annotate``); here it is a load, a conversion,
a compare into a mask and a population count.

:func:`compare_exchange_32` is a sorting network's compare-exchange of two rows of 32
float32 lanes: ``(u, v) → (u if u < v else v, v if u < v else u)`` per lane, which is
``(np.minimum(v, u), np.maximum(u, v))`` for every value but NaN (signed zeros and ties
included: each returns its first argument). numba's ``np.minimum`` keeps NaN checks
(three compares and three blends a vector) and, with AVX2, LLVM had turned the plain
scalar selects into ``vmaskmovps`` stores, which AMD's cores run microcoded. The explicit
vector selects here compile to one compare, a ``vmaxps`` and the stores (with AVX-512
LLVM writes the minimum with a masked ``vmovups`` of the changed lanes, which is not
microcoded).

:func:`transpose_16` copies a 16 × 16 tile of float32 from one C-ordered array to
another, transposed, with 16 vector loads, 64 two-source shuffles and 16 vector stores:
LLVM compiled the plain ``dst[j, i] = src[i, j]`` loops of the gather into 8-wide
gathers (a quarter of the gather's time).
"""

from __future__ import annotations

from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic

__all__ = ["COUNT_WIDTH", "count_below_8", "count_at_most_8", "compare_exchange_32", "transpose_16"]

#: Samples a window count compares at once (``count_below_8``, ``count_at_most_8``).
COUNT_WIDTH = 8


def _typed(s, flat, bound, op: str):
    """Signature and code of ``#{s.flat[flat + j] op bound, j < 8}``; None for other types."""
    if not (isinstance(s, types.Array) and s.dtype == types.float32 and s.layout == "C"
            and isinstance(flat, types.Integer) and isinstance(bound, types.Float)):
        return None

    def codegen(context, builder, signature, args):
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        index = context.cast(builder, args[1], signature.args[1], types.uint64)
        where = builder.gep(ary.data, [index])
        vec_t = ir.VectorType(ir.FloatType(), COUNT_WIDTH)
        values = builder.load(builder.bitcast(where, vec_t.as_pointer()), align=4)
        wide_t = ir.VectorType(ir.DoubleType(), COUNT_WIDTH)
        wide = builder.fpext(values, wide_t)
        limit = context.cast(builder, args[2], signature.args[2], types.float64)
        splat = builder.insert_element(ir.Constant(wide_t, ir.Undefined), limit, ir.Constant(ir.IntType(32), 0))
        splat = builder.shuffle_vector(splat, ir.Constant(wide_t, ir.Undefined),
                                       ir.Constant(ir.VectorType(ir.IntType(32), COUNT_WIDTH), [0] * COUNT_WIDTH))
        mask = builder.fcmp_ordered(op, wide, splat)
        bits = builder.bitcast(mask, ir.IntType(COUNT_WIDTH))
        return builder.zext(builder.ctpop(bits), ir.IntType(64))

    return types.int64(s, flat, bound), codegen


_COUNT_DOC = """Count ``x {op} bound`` over the 8 float32 elements of ``s`` from flat index ``flat`` (C order).

    Parameters
    ----------
    typingctx : object
        The typing context, which numba passes (jitted code calls
        ``{name}(s, flat, bound)``).
    s : numba type of ndarray, 2-D float32, C order
        The samples.
    flat : int (numba type)
        Flat (C-order) index of the first of the 8 samples, which must lie inside ``s``.
    bound : float (numba type)
        The bound (float64 or float32; compared in float64).

    Returns
    -------
    tuple or None
        The ``(signature, codegen)`` of the call for numba, or None (no match: a typing
        error) for other argument types.
    """


def _count_intrinsic(name: str, op: str):
    """The intrinsic ``name(s, flat, bound)`` counting ``x op bound`` (see :data:`_COUNT_DOC`)."""
    def typer(typingctx, s, flat, bound):
        return _typed(s, flat, bound, op)

    typer.__name__ = typer.__qualname__ = name
    typer.__doc__ = _COUNT_DOC.format(op=op, name=name)
    return intrinsic(typer)


count_below_8 = _count_intrinsic("count_below_8", "<")
count_at_most_8 = _count_intrinsic("count_at_most_8", "<=")


_EXCHANGE_WIDTH = 32


def _compare_exchange_code(context, builder, signature, args):
    ary = context.make_array(signature.args[0])(context, builder, args[0])
    vec_t = ir.VectorType(ir.FloatType(), _EXCHANGE_WIDTH)
    rows = []
    for value, typ in zip(args[1:], signature.args[1:]):
        row = context.cast(builder, value, typ, types.uint64)
        flat = builder.mul(row, ir.Constant(ir.IntType(64), _EXCHANGE_WIDTH))
        rows.append(builder.bitcast(builder.gep(ary.data, [flat]), vec_t.as_pointer()))
    u = builder.load(rows[0], align=4)
    v = builder.load(rows[1], align=4)
    less = builder.fcmp_ordered("<", u, v)
    builder.store(builder.select(less, u, v), rows[0], align=4)
    builder.store(builder.select(less, v, u), rows[1], align=4)
    return context.get_dummy_value()


@intrinsic
def compare_exchange_32(typingctx, block, a, b):
    """Replace rows ``a``, ``b`` of ``block`` by their lane-wise minimum and maximum.

    NaN-free rows only (a NaN lane gets the other row's value in both rows).

    Parameters
    ----------
    typingctx : object
        The typing context, which numba passes (jitted code calls
        ``compare_exchange_32(block, a, b)``).
    block : numba type of ndarray, shape (rows, 32), float32, C order
        The rows (sorted in place by a sorting network's pairs).
    a, b : int (numba types)
        The two rows (within ``block``); ``a`` receives the minimum.

    Returns
    -------
    tuple or None
        The ``(signature, codegen)`` of the call for numba, or None (no match: a typing
        error) for other argument types.
    """
    if not (isinstance(block, types.Array) and block.dtype == types.float32 and block.layout == "C"
            and block.ndim == 2 and isinstance(a, types.Integer) and isinstance(b, types.Integer)):
        return None
    return types.none(block, a, b), _compare_exchange_code


_TILE = 16


def _tile_rows(context, builder, signature, args, first):
    """The 16 row pointers of the tile of argument ``first`` (array, start, stride follow)."""
    vec_t = ir.VectorType(ir.FloatType(), _TILE)
    ary = context.make_array(signature.args[first])(context, builder, args[first])
    at = context.cast(builder, args[first + 1], signature.args[first + 1], types.uint64)
    stride = context.cast(builder, args[first + 2], signature.args[first + 2], types.uint64)
    starts = [builder.add(at, builder.mul(stride, ir.Constant(ir.IntType(64), k))) for k in range(_TILE)]
    return [builder.bitcast(builder.gep(ary.data, [start]), vec_t.as_pointer()) for start in starts]


def _transpose_code(context, builder, signature, args):
    rows = [builder.load(ptr, align=4) for ptr in _tile_rows(context, builder, signature, args, 0)]
    # Swap the off-diagonal b × b blocks of every 2b × 2b block, b = 1, 2, 4, 8: each
    # stage exchanges one bit of the row index with the same bit of the column index.
    mask_t = ir.VectorType(ir.IntType(32), _TILE)
    b = 1
    while b < _TILE:
        low = ir.Constant(mask_t, [c if not c & b else _TILE + c - b for c in range(_TILE)])
        high = ir.Constant(mask_t, [c + b if not c & b else _TILE + c for c in range(_TILE)])
        for i in range(_TILE):
            if not i & b:
                j = i + b
                rows[i], rows[j] = (builder.shuffle_vector(rows[i], rows[j], low),
                                    builder.shuffle_vector(rows[i], rows[j], high))
        b *= 2
    for ptr, row in zip(_tile_rows(context, builder, signature, args, 3), rows):
        builder.store(row, ptr, align=4)
    return context.get_dummy_value()


@intrinsic
def transpose_16(typingctx, src, src_at, src_stride, dst, dst_at, dst_stride):
    """Copy a 16 × 16 tile of ``src`` into ``dst``, transposed.

    ``dst.flat[dst_at + j·dst_stride + i] = src.flat[src_at + i·src_stride + j]`` for
    i, j < 16. Both arrays float32 in C order (flat indices and strides in elements);
    the tiles must lie inside them and not overlap.

    Parameters
    ----------
    typingctx : object
        The typing context, which numba passes (jitted code calls
        ``transpose_16(src, src_at, src_stride, dst, dst_at, dst_stride)``).
    src : numba type of ndarray, float32, C order
        Where the tile is read.
    src_at, src_stride : int (numba types)
        Flat index of its first element and the distance between its rows.
    dst : numba type of ndarray, float32, C order
        Where the transposed tile is written.
    dst_at, dst_stride : int (numba types)
        As ``src_at``, ``src_stride``, in ``dst``.

    Returns
    -------
    tuple or None
        The ``(signature, codegen)`` of the call for numba, or None (no match: a typing
        error) for other argument types.
    """
    arrays_ok = all(isinstance(a, types.Array) and a.dtype == types.float32 and a.layout == "C" for a in (src, dst))
    if not (arrays_ok and all(isinstance(i, types.Integer) for i in (src_at, src_stride, dst_at, dst_stride))):
        return None
    return types.none(src, src_at, src_stride, dst, dst_at, dst_stride), _transpose_code
