"""Done means: under the reference engine a GPT training step runs no private operator and
no fused kernel (torch's profiler lists none); under the fast engine it runs them."""

import torch
from torch.profiler import ProfilerActivity, profile

from zerotoml import engine, loss, step, value_and_grad
from zerotoml.optim import AdamW
from zerotoml.transformers import GPT

# operators that only the fast engine may run (their names in torch's profiler)
FAST_OPS = ("mkldnn::_linear_pointwise", "aten::scaled_dot_product_attention", "aten::native_layer_norm",
            "aten::layer_norm", "aten::_fused_adamw_", "aten::gelu", "aten::_softmax", "aten::_log_softmax",
            "aten::cross_entropy_loss", "aten::_foreach_addcdiv_")


def _ops_of_a_training_step(name: str) -> set[str]:
    with engine.use(name):
        m = GPT.init(50, 64, 128, 2, 4, dropout=0.0, bias=False, generator=torch.Generator().manual_seed(0))
        opt = AdamW.init(m, lr=1e-3, weight_decay=0.1)
        idx = torch.randint(0, 50, (8, 65), generator=torch.Generator().manual_seed(1))
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            _, g = value_and_grad(loss, m, idx[:, :-1], idx[:, 1:])
            step(opt, m, g)
    return {e.key for e in prof.key_averages()}


def test_the_reference_engine_runs_no_fused_kernel_and_no_private_operator():
    ops = _ops_of_a_training_step("reference")
    assert "aten::einsum" in ops or "aten::bmm" in ops  # (the profile saw the step)
    assert not ops & set(FAST_OPS), sorted(ops & set(FAST_OPS))


def test_the_fast_engine_runs_torchs_fused_kernels():
    ops = _ops_of_a_training_step("fast")
    assert {"aten::scaled_dot_product_attention", "aten::native_layer_norm", "aten::_fused_adamw_"} <= ops, \
        sorted(o for o in ops if "attention" in o or "norm" in o or "adam" in o)
