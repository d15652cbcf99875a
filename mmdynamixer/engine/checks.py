"""Checks of a whole config that fail at once, before the Runner builds anything, with a clear message.

:class:`~mmdynamixer.engine.DynaMixerRunner` runs :func:`check_config` on the config it is built from. A neck
whose ``in_channels`` disagree with a DynaMixer backbone's outputs would otherwise fail deep inside the first
forward pass (an FPN assertion or a conv shape error); a test-time dataset told to skip unreadable images
would fail at the first such image with mmengine's "Test time pipline should not get `None` data_sample"; a
mistyped ``--resume PATH`` or ``load_from`` would fail only after the model and the data are built.
"""
import os
import os.path as osp
from typing import Iterator, List, Mapping, Optional, Sequence, Tuple

from ..models.dynamixer import DynaMixerNet, resolve_arch, resolve_out_indices, stage_strides
from .checkpoint_files import why_not_resumable

__all__ = ['backbone_out_channels', 'backbone_out_strides', 'check_checkpoint_to_load', 'check_config',
           'check_neck_in_channels', 'check_unreadable_policies', 'is_dynamixer_backbone']


def is_dynamixer_backbone(backbone_cfg: Optional[Mapping]) -> bool:
    """Whether a backbone config builds DynaMixer (``DynaMixer``, ``mmpretrain.DynaMixer`` or the class)."""
    if not isinstance(backbone_cfg, Mapping):
        return False
    kind = backbone_cfg.get('type')
    if isinstance(kind, type):
        return issubclass(kind, DynaMixerNet)
    return isinstance(kind, str) and kind.split('.')[-1] == 'DynaMixer'


def _arch_and_indices(backbone_cfg: Mapping) -> Tuple[dict, Tuple[int, ...]]:
    arch = resolve_arch(backbone_cfg.get('arch', 's'))
    # The backbone's defaults (mmdynamixer.integrations.mmpretrain.DynaMixer): arch 's', out_indices -1.
    indices = resolve_out_indices(backbone_cfg.get('out_indices', -1), len(arch['layers']))
    return arch, indices


def backbone_out_channels(backbone_cfg: Mapping) -> List[int]:
    """Channels of the maps a DynaMixer backbone config returns, in order (sorted ``out_indices``)."""
    arch, indices = _arch_and_indices(backbone_cfg)
    return [arch['embed_dims'][i] for i in indices]


def backbone_out_strides(backbone_cfg: Mapping) -> List[int]:
    """Strides (in pixels) of the maps a DynaMixer backbone config returns: 7, then x2 after each transition."""
    arch, indices = _arch_and_indices(backbone_cfg)
    strides = stage_strides(arch)
    return [strides[i] for i in indices]


def _describe(backbone_cfg: Mapping) -> str:
    arch = backbone_cfg.get('arch', 's')
    arch = repr(arch) if isinstance(arch, str) else f'<dict embed_dims={list(arch.get("embed_dims", []))}>'
    return f'DynaMixer arch={arch} out_indices={_arch_and_indices(backbone_cfg)[1]}'


def check_neck_in_channels(cfg: Mapping) -> None:
    """Raise ``ValueError`` when the module reading a DynaMixer backbone expects other channels.

    The reader is ``model.neck`` (the first neck when it is a list), or ``model.decode_head`` (mmseg,
    its ``in_index`` entries) when there is no neck. A list ``in_channels`` must equal the backbone's
    output channels exactly (an FPN takes every map it is given); an int must equal the last map's
    (mmpretrain's necks read the last map). Configs without a DynaMixer backbone, or whose reader has
    no ``in_channels``, pass unchecked.

    Args:
        cfg: The merged config (``mmengine.Config`` or a plain dict with ``model``).
    """
    model = cfg.get('model') if hasattr(cfg, 'get') else None
    if not isinstance(model, Mapping) or not is_dynamixer_backbone(model.get('backbone')):
        return
    backbone = model['backbone']
    outputs = backbone_out_channels(backbone)
    neck = model.get('neck')
    if isinstance(neck, Sequence) and not isinstance(neck, (str, Mapping)):
        neck = neck[0] if len(neck) else None
    if isinstance(neck, Mapping):
        if neck.get('in_channels') is None:
            return
        expected = neck['in_channels']
        wanted = outputs[-1] if isinstance(expected, int) else outputs
        expected = expected if isinstance(expected, int) else list(expected)
        where = f'model.neck ({neck.get("type")})'
    elif isinstance(model.get('decode_head'), Mapping) and model['decode_head'].get('in_channels') is not None:
        head = model['decode_head']
        expected = head['in_channels']
        expected = expected if isinstance(expected, int) else list(expected)
        index = head.get('in_index', -1)
        try:
            wanted = outputs[index] if isinstance(index, int) else [outputs[i] for i in index]
        except IndexError:
            raise ValueError(f'model.decode_head.in_index={index} selects maps the backbone does not return: '
                             f'{_describe(backbone)} returns {len(outputs)} maps with channels {outputs}') from None
        where = f'model.decode_head ({head.get("type")}, in_index={index})'
    else:
        return
    if expected != wanted:
        raise ValueError(f'{where} has in_channels={expected}, but the backbone {_describe(backbone)} returns maps '
                         f'with channels {outputs}. Set in_channels={wanted} (or change out_indices).')


def _datasets(dataset_cfg) -> Iterator[dict]:
    """A dataset config and the configs it wraps (RepeatDataset, ConcatDataset, ...)."""
    if not isinstance(dataset_cfg, dict):
        return
    yield dataset_cfg
    yield from _datasets(dataset_cfg.get('dataset'))
    for inner in dataset_cfg.get('datasets') or []:
        yield from _datasets(inner)


def check_unreadable_policies(cfg) -> None:
    """A dataset in test mode cannot skip a sample (mmengine fails with 'Test time pipline should not get
    `None` data_sample'): refuse ``on_unreadable='skip'`` there, naming the dataloader."""
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        for dataset in _datasets((cfg.get(loader) or {}).get('dataset')):
            if not dataset.get('test_mode'):
                continue
            for transform in dataset.get('pipeline') or []:
                if isinstance(transform, dict) and transform.get('on_unreadable') == 'skip':
                    raise ValueError(f"{loader}: {transform['type']} has on_unreadable='skip' in a dataset with "
                                     f"test_mode=True, which cannot skip a sample; use on_unreadable='error' there")


def check_checkpoint_to_load(cfg: Mapping) -> None:
    """``load_from`` (``tools/train.py --resume PATH`` sets it with ``resume=True``), when a local path, must be a
    readable file; to resume from, an intact training checkpoint (:func:`why_not_resumable`)."""
    path = cfg.get('load_from')
    if not path or '://' in str(path):
        return
    if cfg.get('resume'):
        source = f'resume=True, load_from={path!r} (--resume PATH)'
        advice = ('Give a checkpoint file that training saved (iter_N.pth, epoch_N.pth), or --resume without a path '
                  'to resume from the newest intact one in the work dir.')
    else:
        source = f'load_from={path!r}'
        advice = 'Give the path of an existing checkpoint file (relative paths start at the working directory).'
    if not osp.isfile(path):
        raise FileNotFoundError(f'{source}: the checkpoint {"is a folder" if osp.isdir(path) else "does not exist"}. '
                                f'{advice}')
    if not os.access(path, os.R_OK):
        raise PermissionError(f'{source}: the checkpoint is not readable (file permissions). {advice}')
    damage = why_not_resumable(path) if cfg.get('resume') else None
    if damage:
        raise ValueError(f'{source}: the checkpoint cannot be resumed from, it is {damage}. {advice}')


def check_config(cfg: Mapping) -> None:
    """Every check above, on the merged config."""
    check_neck_in_channels(cfg)
    check_unreadable_policies(cfg)
    check_checkpoint_to_load(cfg)
