# DynaMixer-S, the release's recipe with bfloat16 instead of float16 mixed precision (A100, H100/H200 and newer).
# bfloat16 has float32's exponent range: gradients cannot overflow or vanish as float16's do, so no loss scaler
# (a disabled GradScaler: no scaling, no skipped steps). The reproduction default stays ./dynamixer-s_8xb256_in1k.py.
_base_ = ['./dynamixer-s_8xb256_in1k.py']

optim_wrapper = dict(dtype='bfloat16', loss_scale=dict(_delete_=True, enabled=False))
