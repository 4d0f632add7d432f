"""zerotoml/engine/gemm.py: ``mm`` and ``addmm`` equal torch.mm and torch.addmm. Large float32 CPU
products run on oneDNN, so their values, gradients and second derivatives are compared with
torch in float32, each against a float64 reference: ours may err by no more than a small
multiple of torch's own float32 error. Everything else (small products, float64, torch.mm
chosen as the library, torch.func transforms) goes to torch and must equal it exactly."""

import pytest
import torch

from zerotoml import engine
from zerotoml.engine import gemm
from zerotoml.engine.planner import einsum

f32, f64 = torch.float32, torch.float64

# m·k·n above gemm.SMALL (2²¹), small enough for a test to take a few milliseconds;
# k > n and k < n take the two branches of ∂L/∂B in `_Product.backward`
SIZES = [(192, 128, 96), (96, 128, 192)]
LAYOUTS = ["contiguous", "transposed", "every_other_column", "column_slice"]
BIASES = [False, True]

onednn = pytest.mark.skipif(not gemm._onednn_works(), reason="torch has no oneDNN inner product here")


# strides on small matrices: `small_threshold` lowers SMALL so that these run on oneDNN too
SMALL_SIZES = [(12, 16, 8), (8, 16, 24)]


@pytest.fixture
def small_threshold(monkeypatch):
    monkeypatch.setattr(gemm, "SMALL", 1)


@pytest.fixture(autouse=True)
def _onednn_library(monkeypatch):
    """Every test starts with oneDNN chosen, whatever `gemm.choose` measures on this machine."""
    monkeypatch.setattr(gemm, "LIBRARY", "onednn")


def _matrix(rows, cols, layout, g, dtype=f32):
    """A (rows, cols) matrix laid out in memory as ``layout`` says."""
    if layout == "contiguous":
        return torch.randn(rows, cols, dtype=dtype, generator=g)
    if layout == "transposed":  # column-major: the .t() of a contiguous matrix
        return torch.randn(cols, rows, dtype=dtype, generator=g).t()
    if layout == "every_other_column":  # strides (2 cols, 2)
        return torch.randn(rows, 2 * cols, dtype=dtype, generator=g)[:, ::2]
    if layout == "column_slice":  # rows apart by more than cols, a storage offset
        return torch.randn(rows, cols + 9, dtype=dtype, generator=g)[:, 5:5 + cols]
    raise ValueError(layout)


def _assert_as_accurate(ours, theirs, exact, factor=4.0, rel=2e-6):
    """``ours`` (float32) is as close to ``exact`` (float64) as torch's float32 ``theirs``:
    within ``factor`` times torch's largest error, plus ``rel`` times the largest magnitude."""
    assert ours.shape == theirs.shape == exact.shape
    assert ours.dtype == theirs.dtype == f32
    scale = exact.abs().max().item()
    err_ours = (ours.double() - exact).abs().max().item()
    err_torch = (theirs.double() - exact).abs().max().item()
    assert err_ours <= factor * err_torch + rel * scale, (err_ours, err_torch, scale)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5 * scale)


def _operands(size, la, lb, bias, seed, requires_grad=False):
    m, k, n = size
    g = torch.Generator().manual_seed(seed)
    A, B = _matrix(m, k, la, g), _matrix(k, n, lb, g)
    b = torch.randn(n, generator=g) if bias else None
    if requires_grad:
        A.requires_grad_()
        B.requires_grad_()
        if b is not None:
            b.requires_grad_()
    return A, B, b, g


def _torch_mm(A, B, b):
    return A @ B if b is None else torch.addmm(b, A, B)


def _double(*xs):
    return [None if x is None else x.detach().double().requires_grad_(x.requires_grad) for x in xs]


def test_sizes_are_above_small():
    assert all(m * k * n >= gemm.SMALL for m, k, n in SIZES)


# 1. values: every layout of A and B, with a bias and without


@onednn
@pytest.mark.parametrize("bias", BIASES)
@pytest.mark.parametrize("lb", LAYOUTS)
@pytest.mark.parametrize("la", LAYOUTS)
def test_values_equal_torch_mm_for_every_layout(la, lb, bias):
    A, B, b, _ = _operands(SIZES[0], la, lb, bias, seed=1)
    assert gemm.uses_onednn(A, B)
    ours = gemm.mm(A, B, b)
    assert ours.grad_fn is None  # nothing requires grad: no autograd node
    exact = _torch_mm(*_double(A, B, b))
    _assert_as_accurate(ours, _torch_mm(A, B, b), exact)


@onednn
@pytest.mark.parametrize("size", [(1, 4096, 512), (4096, 512, 1), (128, 128, 128)])
def test_a_row_a_column_and_exactly_small(size):
    A, B, b, _ = _operands(size, "contiguous", "contiguous", True, seed=2)
    assert gemm.uses_onednn(A, B)
    for bias in (None, b):
        _assert_as_accurate(gemm.mm(A, B, bias), _torch_mm(A, B, bias), _torch_mm(*_double(A, B, bias)))


@onednn
@pytest.mark.parametrize("la,lb", [("expanded", "contiguous"), ("contiguous", "expanded"),
                                   ("transposed", "expanded"), ("expanded", "transposed")])
def test_broadcast_operands_with_zero_strides(small_threshold, la, lb):
    g = torch.Generator().manual_seed(3)
    m, k, n = SMALL_SIZES[0]

    def make(rows, cols, layout):
        if layout == "expanded":
            return torch.randn(rows, 1, generator=g).expand(rows, cols)
        return _matrix(rows, cols, layout, g)

    A, B = make(m, k, la), make(k, n, lb)
    assert gemm.uses_onednn(A, B)
    _assert_as_accurate(gemm.mm(A, B), A @ B, A.double() @ B.double())


# 2. gradients


def _check_gradients(size, la, lb, bias, seed):
    A, B, b, g = _operands(size, la, lb, bias, seed=seed, requires_grad=True)
    R = torch.randn(size[0], size[2], generator=g)
    leaves = [x for x in (A, B, b) if x is not None]
    ours = gemm.mm(A, B, b)
    assert type(ours.grad_fn).__name__ == "_ProductBackward"
    grads = torch.autograd.grad((ours * R).sum(), leaves)
    theirs = torch.autograd.grad((_torch_mm(A, B, b) * R).sum(), leaves)
    leaves64 = _double(*leaves)
    exact = torch.autograd.grad((_torch_mm(*leaves64, *([None] * (3 - len(leaves)))) * R.double()).sum(), leaves64)
    for x, o, t, e in zip(leaves, grads, theirs, exact):
        assert o.shape == x.shape
        _assert_as_accurate(o, t, e)


@onednn
@pytest.mark.parametrize("bias", BIASES)
@pytest.mark.parametrize("la,lb", [("contiguous", "contiguous"), ("contiguous", "transposed"),
                                   ("transposed", "contiguous"), ("transposed", "transposed")])
@pytest.mark.parametrize("size", SIZES)
def test_gradients_equal_torch(size, la, lb, bias):
    _check_gradients(size, la, lb, bias, seed=4)


@onednn
@pytest.mark.parametrize("bias", BIASES)
@pytest.mark.parametrize("lb", LAYOUTS)
@pytest.mark.parametrize("la", LAYOUTS)
@pytest.mark.parametrize("size", SMALL_SIZES)
def test_gradients_equal_torch_for_every_layout(small_threshold, size, la, lb, bias):
    _check_gradients(size, la, lb, bias, seed=4)


@onednn
@pytest.mark.parametrize("which", ["A", "B", "bias"])
def test_only_one_operand_requires_grad(which):
    A, B, b, g = _operands(SIZES[0], "transposed", "contiguous", True, seed=5)
    x = {"A": A, "B": B, "bias": b}[which].requires_grad_()
    R = torch.randn(SIZES[0][0], SIZES[0][2], generator=g)
    (gemm.mm(A, B, b) * R).sum().backward()
    for name, y in (("A", A), ("B", B), ("bias", b)):
        if name != which:
            assert y.grad is None, name
    (ours,) = torch.autograd.grad((gemm.mm(A, B, b) * R).sum(), x)
    (theirs,) = torch.autograd.grad((_torch_mm(A, B, b) * R).sum(), x)
    (x64,) = _double(x)
    ops = [x64 if y is x else y.double() for y in (A, B, b)]
    (exact,) = torch.autograd.grad((_torch_mm(*ops) * R.double()).sum(), x64)
    _assert_as_accurate(ours, theirs, exact)


@onednn
@pytest.mark.parametrize("la,lb", [("contiguous", "contiguous"), ("transposed", "transposed")])
def test_gradient_of_a_sum_broadcasts_the_output_gradient(small_threshold, la, lb):
    """``C.sum()`` hands the backward an expanded gradient: strides (0, 0)."""
    A, B, b, _ = _operands(SMALL_SIZES[0], la, lb, True, seed=6, requires_grad=True)
    ours = torch.autograd.grad(gemm.mm(A, B, b).sum(), (A, B, b))
    theirs = torch.autograd.grad(_torch_mm(A, B, b).sum(), (A, B, b))
    A64, B64, b64 = _double(A, B, b)
    exact = torch.autograd.grad(_torch_mm(A64, B64, b64).sum(), (A64, B64, b64))
    for o, t, e in zip(ours, theirs, exact):
        _assert_as_accurate(o, t, e)


@onednn
def test_no_autograd_node_without_grad_mode():
    A, B, b, _ = _operands(SIZES[0], "contiguous", "contiguous", True, seed=7, requires_grad=True)
    with torch.no_grad():
        C = gemm.mm(A, B, b)
    assert C.grad_fn is None and not C.requires_grad


# 3. second derivatives


@onednn
@pytest.mark.parametrize("size,la,lb", [
    (SIZES[0], "contiguous", "contiguous"), (SIZES[0], "transposed", "contiguous"),
    (SIZES[0], "contiguous", "transposed"), (SIZES[1], "transposed", "transposed"),
    (SMALL_SIZES[0], "every_other_column", "column_slice"), (SMALL_SIZES[1], "column_slice", "every_other_column")])
def test_second_derivatives_equal_torch(monkeypatch, size, la, lb):
    """The loss is quadratic in C, so ∂L/∂C depends on A and B and ∂L/∂A, ∂L/∂B depend on both."""
    if size in SMALL_SIZES:
        monkeypatch.setattr(gemm, "SMALL", 1)
    m, k, n = size
    A, B, b, g = _operands(size, la, lb, True, seed=8, requires_grad=True)
    R, S, T = (torch.randn(*s, generator=g) for s in ((m, n), (m, k), (k, n)))

    def second(product, A, B, b, R, S, T):
        C = product(A, B, b)
        gA, gB = torch.autograd.grad((C * C * R).sum(), (A, B), create_graph=True)
        return (torch.autograd.grad((gA * S).sum(), (A, B, b), retain_graph=True)
                + torch.autograd.grad((gB * T).sum(), (A, B, b)))

    assert gemm.uses_onednn(A, B)
    ours = second(gemm.mm, A, B, b, R, S, T)
    theirs = second(_torch_mm, A, B, b, R, S, T)
    exact = second(_torch_mm, *_double(A, B, b), R.double(), S.double(), T.double())
    for o, t, e in zip(ours, theirs, exact):
        _assert_as_accurate(o, t, e, rel=1e-5)


@onednn
def test_first_derivative_of_the_first_derivative_w_r_t_B():
    A, B, _, g = _operands(SIZES[0], "contiguous", "contiguous", False, seed=9, requires_grad=True)
    R = torch.randn(SIZES[0][0], SIZES[0][2], generator=g)
    S = torch.randn(SIZES[0][0], SIZES[0][1], generator=g)

    def d2(product, A, B, R, S):
        (gA,) = torch.autograd.grad((product(A, B, None) * R).sum(), A, create_graph=True)
        return torch.autograd.grad((gA * S).sum(), B)[0]

    A64, B64 = _double(A, B)
    exact = d2(_torch_mm, A64, B64, R.double(), S.double())
    _assert_as_accurate(d2(gemm.mm, A, B, R, S), d2(_torch_mm, A, B, R, S), exact)


# 4. what goes to torch


def _goes_to_torch(A, B, b):
    assert not gemm.uses_onednn(A, B)
    assert torch.equal(gemm.mm(A, B), torch.mm(A, B))
    assert torch.equal(gemm.mm(A, B, b), torch.addmm(b, A, B))
    for P in (b.reshape(1, -1), torch.ones(A.shape[0], B.shape[1], dtype=A.dtype)):
        assert torch.equal(gemm.addmm(P, A, B), torch.addmm(P, A, B))


@pytest.mark.parametrize("size", [(8, 16, 4), (127, 128, 128)])
def test_small_products_go_to_torch(size):
    assert size[0] * size[1] * size[2] < gemm.SMALL
    _goes_to_torch(*_operands(size, "transposed", "contiguous", True, seed=10)[:3])


def test_float64_goes_to_torch():
    m, k, n = SIZES[0]
    g = torch.Generator().manual_seed(11)
    A, B = _matrix(m, k, "transposed", g, f64), _matrix(k, n, "column_slice", g, f64)
    _goes_to_torch(A, B, torch.randn(n, dtype=f64, generator=g))


@pytest.mark.parametrize("la,lb", [("contiguous", "contiguous"), ("transposed", "every_other_column")])
def test_torch_chosen_goes_to_torch(monkeypatch, la, lb):
    monkeypatch.setattr(gemm, "LIBRARY", "torch")
    _goes_to_torch(*_operands(SIZES[0], la, lb, True, seed=12)[:3])


def test_a_bias_that_is_not_a_vector_goes_to_torch():
    A, B, _, g = _operands(SIZES[0], "contiguous", "contiguous", False, seed=13)
    P = torch.randn(1, SIZES[0][2], generator=g)
    assert torch.equal(gemm.mm(A, B, P), torch.addmm(P, A, B))


@onednn
def test_mismatched_shapes_raise():
    A, B, _, _ = _operands(SIZES[0], "contiguous", "contiguous", False, seed=14)
    with pytest.raises(RuntimeError):
        gemm.mm(A, B[:-1])


# 5. addmm


@onednn
@pytest.mark.parametrize("rows", ["one", "m"])
@pytest.mark.parametrize("la,lb", [("contiguous", "contiguous"), ("transposed", "transposed")])
def test_addmm_equals_torch_addmm(la, lb, rows):
    m, _, n = SIZES[0]
    A, B, _, g = _operands(SIZES[0], la, lb, False, seed=15, requires_grad=True)
    P = torch.randn(1 if rows == "one" else m, n, generator=g, requires_grad=True)
    R = torch.randn(m, n, generator=g)
    assert gemm.uses_onednn(A, B)
    ours = gemm.addmm(P, A, B)
    theirs = torch.addmm(P, A, B)
    P64, A64, B64 = _double(P, A, B)
    exact = torch.addmm(P64, A64, B64)
    _assert_as_accurate(ours, theirs, exact)
    grads = zip(torch.autograd.grad((ours * R).sum(), (P, A, B)),
                torch.autograd.grad((theirs * R).sum(), (P, A, B)),
                torch.autograd.grad((exact * R.double()).sum(), (P64, A64, B64)))
    for o, t, e in grads:
        _assert_as_accurate(o, t, e)


# 6. torch.func transforms fall back to torch


JIT_WARNING = "ignore:`torch.jit.script` is deprecated:DeprecationWarning"  # torch.func's first use


@pytest.mark.filterwarnings(JIT_WARNING)
def test_torch_func_grad_equals_torch():
    A, B, _, g = _operands(SIZES[0], "transposed", "contiguous", False, seed=16)
    R = torch.randn(SIZES[0][0], SIZES[0][2], generator=g)
    seen = []

    def loss(product, A, B):
        seen.append(gemm.uses_onednn(A, B))
        return (product(A, B) * R).sum()

    ours = torch.func.grad(lambda A, B: loss(gemm.mm, A, B), argnums=(0, 1))(A, B)
    theirs = torch.func.grad(lambda A, B: loss(torch.mm, A, B), argnums=(0, 1))(A, B)
    assert seen[0] is False  # inside the transform
    for o, t in zip(ours, theirs):
        assert torch.equal(o, t)


@pytest.mark.filterwarnings(JIT_WARNING)
def test_torch_func_vmap_and_jvp_equal_torch():
    m, k, n = SIZES[0]
    g = torch.Generator().manual_seed(17)
    As = torch.randn(3, m, k, generator=g)
    B = torch.randn(k, n, generator=g)
    bias = torch.randn(n, generator=g)
    seen = []

    def ours_one(a):
        seen.append(gemm.uses_onednn(a, B))
        return gemm.mm(a, B, bias)

    assert torch.equal(torch.func.vmap(ours_one)(As), torch.func.vmap(lambda a: torch.addmm(bias, a, B))(As))
    assert seen == [False]
    V = torch.randn(m, k, generator=g)
    ours = torch.func.jvp(lambda a: gemm.mm(a, B), (As[0],), (V,))
    theirs = torch.func.jvp(lambda a: torch.mm(a, B), (As[0],), (V,))
    for o, t in zip(ours, theirs):
        assert torch.equal(o, t)


# 7. zerotoml.einsum multiplies through gemm


@onednn
@pytest.mark.parametrize("pattern,sw", [("b t d_in, d_in d_out -> b t d_out", (128, 96)),  # Linear
                                        ("b t d, v d -> b t v", (96, 128))])                # tied head
@pytest.mark.parametrize("plus", [False, True])
def test_einsum_of_a_linear_layer_equals_torch_einsum(pattern, sw, plus):
    g = torch.Generator().manual_seed(18)
    x = torch.randn(4, 48, 128, generator=g, requires_grad=True)  # m = 192, k = 128, n = 96
    W = torch.randn(*sw, generator=g, requires_grad=True)
    b = torch.randn(96, generator=g, requires_grad=True) if plus else None
    R = torch.randn(4, 48, 96, generator=g)
    spec = "btd,de->bte" if sw == (128, 96) else "btd,vd->btv"

    def reference(x, W, b):
        y = torch.einsum(spec, x, W)
        return y if b is None else y + b

    leaves = [t for t in (x, W, b) if t is not None]
    ours = einsum(x, W, pattern, plus=b)
    theirs = reference(x, W, b)
    leaves64 = _double(*leaves)
    exact = reference(*leaves64, *([None] * (3 - len(leaves64))))
    _assert_as_accurate(ours, theirs, exact)
    grads = zip(torch.autograd.grad((ours * R).sum(), leaves),
                torch.autograd.grad((theirs * R).sum(), leaves),
                torch.autograd.grad((exact * R.double()).sum(), leaves64))
    for o, t, e in grads:
        _assert_as_accurate(o, t, e)


# 8. the choice of library


# biases that oneDNN's inner product does not take as they are: a strided one is made
# contiguous, one broadcast from a single entry goes to torch.addmm


@onednn
def test_a_strided_bias():
    A, B, _, g = _operands(SIZES[0], "contiguous", "contiguous", False, seed=19)
    b = torch.randn(SIZES[0][2], 2, generator=g)[:, 0]  # stride 2, e.g. one column of a fused parameter
    _assert_as_accurate(gemm.mm(A, B, b), torch.addmm(b, A, B), torch.addmm(b.double(), A.double(), B.double()))


@onednn
def test_einsum_with_a_strided_plus():
    g = torch.Generator().manual_seed(20)
    x, W = torch.randn(4, 48, 128, generator=g), torch.randn(128, 96, generator=g)
    b = torch.randn(96, 2, generator=g)[:, 0]
    ours = einsum(x, W, "b t d_in, d_in d_out -> b t d_out", plus=b)
    theirs = torch.einsum("btd,de->bte", x, W) + b
    _assert_as_accurate(ours, theirs, torch.einsum("btd,de->bte", x.double(), W.double()) + b.double())


@onednn
@pytest.mark.parametrize("call", ["mm", "addmm"])
def test_a_bias_broadcast_from_one_entry(call):
    A, B, _, g = _operands(SIZES[0], "contiguous", "contiguous", False, seed=21)
    P = torch.randn(1, 1, generator=g)
    ours = gemm.mm(A, B, P.reshape(1)) if call == "mm" else gemm.addmm(P, A, B)
    _assert_as_accurate(ours, torch.addmm(P, A, B), torch.addmm(P.double(), A.double(), B.double()))


# which layouts reach oneDNN


def _dense(x):
    return x.is_contiguous() or x.t().is_contiguous()


@pytest.fixture
def onednn_calls(small_threshold, monkeypatch):
    """For each call of oneDNN's inner product: whether X is row-major, W row- or column-major
    and the bias (if any) contiguous, the layouts its fast kernels take."""
    seen = []
    inner = torch.ops.mkldnn._linear_pointwise

    def spy(X, W, b, *rest):
        seen.append((X.is_contiguous(), _dense(W), b is None or b.is_contiguous()))
        return inner(X, W, b, *rest)

    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", spy)
    return seen


@onednn
@pytest.mark.parametrize("bias", BIASES)
@pytest.mark.parametrize("lb", LAYOUTS)
@pytest.mark.parametrize("la", LAYOUTS)
def test_onednn_gets_dense_operands(onednn_calls, la, lb, bias):
    """oneDNN runs strides other than row- and column-major on its reference kernel, ~1000
    times slower than torch.mm: every call, the backward ones included, hands it dense matrices."""
    m, k, n = SMALL_SIZES[0]
    A, B, b, g = _operands((m, k, n), la, lb, bias, seed=22, requires_grad=True)
    (gemm.mm(A, B, b) * torch.randn(m, n, generator=g)).sum().backward()
    assert len(onednn_calls) == 3  # C, ∂L/∂A, ∂L/∂B
    assert all(all(call) for call in onednn_calls), onednn_calls


@onednn
def test_onednn_gets_dense_operands_for_the_gradient_of_a_sum(onednn_calls):
    """The gradient of C.sum() is expanded (strides 0, 0): copied before it becomes a W."""
    A, B, _, _ = _operands(SMALL_SIZES[0], "contiguous", "contiguous", False, seed=23, requires_grad=True)
    gemm.mm(A, B).sum().backward()
    assert len(onednn_calls) == 3
    assert all(all(call) for call in onednn_calls), onednn_calls


@onednn
@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_torch_compile_uses_torchs_product():
    """Under torch.compile the product is left to the compiler (inductor picks its own GEMM)."""
    g = torch.Generator().manual_seed(31)
    A, B, b = torch.randn(192, 128, generator=g), torch.randn(128, 96, generator=g), torch.randn(96, generator=g)
    compiled = torch.compile(lambda A, B, b: gemm.mm(A, B, b).relu())
    torch.testing.assert_close(compiled(A, B, b), torch.addmm(b, A, B).relu(), rtol=1e-5, atol=1e-5)


def test_choose_measures_each_shape_once_and_keeps_its_answer(monkeypatch):
    monkeypatch.setattr(gemm, "LIBRARY", None)
    monkeypatch.setattr(gemm, "choices", {})
    A, B = _operands((4, 4, 4), "contiguous", "contiguous", False, seed=1)[:2]
    assert not gemm.uses_onednn(A, B) and gemm.choices == {}  # (a small product: decided by its size)
    A, B = _operands(SIZES[0], "contiguous", "contiguous", False, seed=1)[:2]
    first = gemm.uses_onednn(A, B)
    assert list(gemm.choices) == [(*SIZES[0], True, True)] and gemm.choices[(*SIZES[0], True, True)] == first
    gemm.choices[(*SIZES[0], True, True)] = not first  # the decision is read, not measured again
    assert gemm.uses_onednn(A, B) == (not first)
    Bt = _matrix(SIZES[0][1], SIZES[0][2], "transposed", torch.Generator().manual_seed(2))
    gemm.uses_onednn(A, Bt)
    assert (*SIZES[0], True, False) in gemm.choices  # another layout: its own decision
    ours = gemm.mm(A, B)  # whichever library: the same product
    _assert_as_accurate(ours, A @ B, A.double() @ B.double())


def test_without_the_private_operator_torch_multiplies(monkeypatch):
    """Where torch carries no oneDNN inner product, every product goes to torch.mm, with
    nothing measured."""
    monkeypatch.setattr(gemm, "_available", None)
    monkeypatch.setattr(gemm, "LIBRARY", None)
    monkeypatch.setattr(gemm, "choices", {})

    def missing(*args, **kwargs):
        raise AttributeError("no mkldnn._linear_pointwise in this build")

    monkeypatch.setattr(gemm, "_inner", missing)
    A, B, b = _operands(SIZES[0], "contiguous", "contiguous", True, seed=3)[:3]
    assert not gemm.uses_onednn(A, B)
    assert torch.equal(gemm.mm(A, B, b), torch.addmm(b, A, B)) and gemm.choices == {}
