# PyTorch peer for `deno task bench`: the upstream microbenchmark (sglang PR 17801, see
# ../shared/reference/torch_seed_microbench.py) at every bucket, for the Kimi Linear problems.
# Prints one JSON object per line: {"tp", "dtype", "m", "after_us", "gemm_us", "before_us"}.
# after = one GEMM on concatenated weights + one bmm on f_a/g_a; gemm = the GEMM alone;
# before = the 8 separate projections. Times are triton do_bench medians with L2 flushed.
import json, sys
import torch
from triton.testing import do_bench

tps = [int(t) for t in (sys.argv[1] if len(sys.argv) > 1 else "4").split(",")]
ms = [int(m) for m in (sys.argv[2] if len(sys.argv) > 2 else ",".join(str(2**i) for i in range(15))).split(",")]
dtypes = {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32}
names = (sys.argv[3] if len(sys.argv) > 3 else "bf16,f16,f32").split(",")
torch.backends.cuda.matmul.allow_tf32 = False
k = 2304
for tp in tps:
    heads = 32 // tp
    n1s = [heads * 128] * 3 + [heads, 128, 128]
    n2 = heads * 128
    for name in names:
        dtype = dtypes[name]
        for m in ms:
            x = torch.randn([m, k], device="cuda", dtype=dtype)
            w1s = [torch.randn([n, k], device="cuda", dtype=dtype) for n in n1s]
            w2s = [torch.randn([n2, 128], device="cuda", dtype=dtype) for _ in range(2)]
            mw1 = torch.cat(w1s, 0)
            mw2 = torch.stack(w2s, 0)

            def before():
                y1s = [x @ w.T for w in w1s]
                y1s[-2] @ w2s[0].T
                y1s[-1] @ w2s[1].T

            def after():
                y = x @ mw1.T
                torch.bmm(y[:, -256:].view(m, 2, 128).transpose(0, 1), mw2.transpose(-1, -2))

            def gemm_only():
                x @ mw1.T

            row = {"tp": tp, "dtype": name, "m": m}
            for label, fn in [("after_us", after), ("gemm_us", gemm_only), ("before_us", before)]:
                row[label] = round(do_bench(fn, warmup=25, rep=100, return_mode="median") * 1e3, 2)
            print(json.dumps(row), flush=True)
