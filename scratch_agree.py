import os, torch
from genomix.models import build
from genomix.kernels.fftconv import two_level
torch.manual_seed(0)
L = 1 << 20
model = build("hyenadna-large-1m", max_seq_len=L).cuda().eval()
ids = torch.randint(7, 11, (1, L), device="cuda")
def logits(env):
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            return model(ids).logits.float()
    finally:
        for k, v in old.items():
            if v is None: os.environ.pop(k, None)
            else: os.environ[k] = v
ref = logits({"GENOMIX_REFERENCE_OPS": "fftconv,fftconv-short,fftconv-cufft"})
a = logits({})
b = logits({})
one = logits({"GENOMIX_FFTCONV_TWO_LEVEL": "0"})
rel = lambda x, y: float((x - y).norm() / y.norm())
print("two-level vs ref", rel(a, ref), "| repeat bitwise equal", torch.equal(a, b), "| one-level vs ref", rel(one, ref), "| two vs one", rel(a, one))
with torch.no_grad():
    ref32 = None
# fp32 model (no autocast): reference vs cufft path (fp32 spectra)
def logits32(env):
    os.environ.update(env)
    try:
        with torch.no_grad():
            return model(ids[:, : 1 << 18]).logits.float()
    finally:
        for k in env: os.environ.pop(k, None)
r32 = logits32({"GENOMIX_REFERENCE_OPS": "fftconv,fftconv-short,fftconv-cufft"})
c32 = logits32({})
print("fp32 model at 256K: cufft vs ref", rel(c32, r32))
