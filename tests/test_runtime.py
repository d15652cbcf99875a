"""The runtime fixes the tools apply: weights-only loading of mmengine checkpoints, AMP without CUDA."""
import io
import pickle

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import HistoryBuffer, MessageHub

from mmdynamixer.engine import FiniteLossHook
from mmdynamixer.engine.runtime import allow_mmengine_checkpoint_types, amp_off_without_cuda


class _Escape:
    """Pickles as getattr(HistoryBuffer, '__init__'): an attribute walk that must stay refused."""

    def __reduce__(self):
        return getattr, (HistoryBuffer, '__init__')


def test_message_hub_state_loads_weights_only():
    allow_mmengine_checkpoint_types()
    hub = MessageHub.get_instance('test_runtime')
    hub.update_scalar('train/loss', 0.5)
    hub.update_info('epoch', 3)
    buffer = io.BytesIO()
    torch.save({'message_hub': hub.state_dict(), 'state_dict': {'w': torch.ones(2)}}, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    assert loaded['message_hub']['log_scalars']['train/loss'].current() == 0.5


def test_other_getattr_stays_refused():
    allow_mmengine_checkpoint_types()
    buffer = io.BytesIO()
    torch.save({'x': _Escape()}, buffer)
    buffer.seek(0)
    with pytest.raises(pickle.UnpicklingError, match="refusing getattr.*'__init__'"):
        torch.load(buffer, weights_only=True)


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the CPU fallback')
def test_amp_becomes_float32_without_cuda():
    cfg = Config(dict(optim_wrapper=dict(type='AmpOptimWrapper', loss_scale='dynamic', optimizer=dict(type='AdamW'))))
    with pytest.warns(UserWarning, match='needs CUDA'):
        amp_off_without_cuda(cfg)
    assert cfg.optim_wrapper == dict(type='OptimWrapper', optimizer=dict(type='AdamW'))


def test_non_finite_loss_stops_with_iteration_and_terms():
    from types import SimpleNamespace
    hook, runner = FiniteLossHook(), SimpleNamespace(iter=41, epoch=2)
    hook.after_train_iter(runner, 5, outputs={'loss': torch.tensor(1.5), 'loss_cls': torch.tensor(1.5)})
    outputs = {'loss': torch.tensor(float('nan')), 'loss_cls': torch.tensor(float('inf')), 'accuracy': torch.tensor(0.)}
    with pytest.raises(FloatingPointError, match=r'iteration 42 \(epoch 3, batch 5\): loss=nan, loss_cls=inf\.'):
        hook.after_train_iter(runner, 5, outputs=outputs)
