"""Checks of a whole config that fail at once, before the Runner builds anything, with a clear message.

:class:`~mmdynamixer.engine.DynaMixerRunner` runs :func:`check_config` on the config it is built from. A neck
whose ``in_channels`` disagree with a DynaMixer backbone's outputs would otherwise fail deep inside the first
forward pass (an FPN assertion or a conv shape error); heads told other strides than those of the maps they run
on (anchors, RoI extractors, segmentation heads written for ResNet's 4-32) would train without a word, on anchors
and RoIs misplaced on the image; a test-time dataset told to skip unreadable images
would fail at the first such image with mmengine's "Test time pipline should not get `None` data_sample"; a
mistyped ``--resume PATH`` or ``load_from`` would fail only after the model and the data are built.
"""
import os
import os.path as osp
from fractions import Fraction
from typing import Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..models.dynamixer import DynaMixerNet, resolve_arch, resolve_out_indices, stage_strides
from .checkpoint_files import why_not_resumable

__all__ = ['backbone_out_channels', 'backbone_out_strides', 'check_checkpoint_to_load', 'check_config',
           'check_feature_strides', 'check_neck_in_channels', 'check_unreadable_policies', 'is_dynamixer_backbone',
           'stride_report']


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


def _is_type(cfg, name: str) -> bool:
    """Whether a module config's ``type`` is ``name``, with or without a registry scope (``'mmdet.FPN'``)."""
    kind = cfg.get('type') if isinstance(cfg, Mapping) else None
    kind = kind.__name__ if isinstance(kind, type) else kind
    return isinstance(kind, str) and kind.split('.')[-1] == name


def _fpn_out_strides(neck: Mapping, in_strides: List[int], scope: Optional[str]) -> Tuple[List[int], List[int]]:
    """The strides of the maps an FPN (mmdet's or mmseg's) reads from ``in_strides`` and of those it returns: one
    output per input from ``start_level`` to ``end_level``, then each extra output (``num_outs`` beyond those;
    a stride-2 conv or max pooling) at twice the stride of the one before."""
    start, end = neck.get('start_level', 0), neck.get('end_level', -1)
    if end == -1:
        stop = len(in_strides)
    else:  # mmseg's end_level is exclusive, mmdet's inclusive
        stop = end if scope == 'mmseg' else end + 1
    used = list(in_strides[start:stop])
    outs = list(used)
    while used and len(outs) < neck.get('num_outs', len(used)):
        outs.append(outs[-1] * 2)
    return used, outs


def _as_list(cfg) -> List[Mapping]:
    """A module config, or each of a list of them (cascade RoI extractors, several auxiliary heads)."""
    if isinstance(cfg, Mapping):
        return [cfg]
    if isinstance(cfg, Sequence) and not isinstance(cfg, str):
        return [c for c in cfg if isinstance(c, Mapping)]
    return []


def _anchor_strides(strides) -> List:
    """Anchor strides as configs write them (ints, or (w, h) pairs), equal pairs as one int."""
    return [s[0] if isinstance(s, Sequence) and len(s) == 2 and s[0] == s[1] else s for s in strides]


def _pyramid_advice(backbone: Mapping, neck: Mapping, scope: Optional[str]) -> Tuple[str, List[int]]:
    """What to set so that an FPN reads one DynaMixer map per stride, and the strides it then returns."""
    arch, _ = _arch_and_indices(backbone)
    strides = stage_strides(arch)
    last_of_each = tuple(i for i, s in enumerate(strides) if i == len(strides) - 1 or strides[i + 1] != s)
    channels = [arch['embed_dims'][i] for i in last_of_each]
    fixed = dict(neck, start_level=0, end_level=-1)
    _, outs = _fpn_out_strides(fixed, [strides[i] for i in last_of_each], scope)
    advice = (f'set model.backbone.out_indices={last_of_each} (the last stage at each stride), '
              f'model.neck.in_channels={channels} and model.neck.start_level=0: its outputs are then at '
              f'strides {outs}')
    return advice, outs


def stride_report(cfg: Mapping) -> Tuple[List[Tuple[str, list]], List[str]]:
    """The strides (in pixels) along a dense config with a DynaMixer backbone, and what disagrees.

    Returns ``(rows, problems)``: rows ``(where, strides)`` for the backbone's outputs, the FPN's outputs, and
    every stride a head is told (anchor generators, RoI extractors' ``featmap_strides``, segmentation heads'
    ``feature_strides``); problems, one message per disagreement naming the values and what to set. A neck other
    than mmdet's / mmseg's ``FPN`` is not modelled: the heads after it are then not checked. Without a DynaMixer
    backbone both lists are empty.

    The rules: an FPN's inputs must grow in stride (else its levels repeat one stride: DynaMixer-S has maps at
    7 and 14 only, so ``out_indices=(0, 1, 2, 3)`` gives 7, 14, 14, 14); anchor strides must be the strides of
    the maps the head runs on, level by level; an RoI extractor's ``featmap_strides`` those of the first maps;
    a segmentation head's ``feature_strides`` those of the maps its ``in_index`` selects; and mmseg's
    ``FPNHead``, which counts its upsampling steps as ``int(log2(stride) - log2(first))``, only strides whose
    ratios that counts right (not 7-56: use ``StrideFPNHead``).
    """
    model = cfg.get('model') if hasattr(cfg, 'get') else None
    if not isinstance(model, Mapping) or not is_dynamixer_backbone(model.get('backbone')):
        return [], []
    scope = cfg.get('default_scope')
    backbone = model['backbone']
    maps = backbone_out_strides(backbone)
    rows = [(f'model.backbone ({_describe(backbone)}) outputs', maps)]
    problems = []
    # The maps the heads run on, as they are and as they would be once the pyramid advice is followed.
    wanted = maps
    neck = model.get('neck')
    if neck is not None:
        necks = _as_list(neck)
        if len(necks) != 1 or not _is_type(necks[0], 'FPN'):
            return rows, problems
        neck = necks[0]
        used, maps = _fpn_out_strides(neck, maps, scope)
        wanted = maps
        rows.append((f'model.neck ({neck.get("type")}, start_level={neck.get("start_level", 0)}) outputs', maps))
        if any(b <= a for a, b in zip(used, used[1:])):
            advice, wanted = _pyramid_advice(backbone, neck, scope)
            problems.append(f'model.neck ({neck.get("type")}) reads the backbone\'s maps at strides {used} (from '
                            f'start_level={neck.get("start_level", 0)} of the backbone\'s {rows[0][1]}), but an '
                            f'FPN needs each input at a larger stride than the one before, or its levels repeat a '
                            f'stride: {advice}.')
    on = f'the maps it runs on are at strides {maps}' + (f' ({wanted} once the neck is fixed)' if wanted != maps
                                                          else '')

    for head_name in ('bbox_head', 'rpn_head'):
        for generator_key in ('anchor_generator', 'prior_generator'):
            generator = (model.get(head_name) or {}).get(generator_key)
            if not isinstance(generator, Mapping) or generator.get('strides') is None:
                continue
            where = f'model.{head_name}.{generator_key}.strides'
            stated = _anchor_strides(generator['strides'])
            rows.append((where, stated))
            if stated != wanted:
                problems.append(f'{where}={stated}, but {on}: set strides={wanted}.'
                                + _size_advice(generator, stated, wanted))

    roi_head = model.get('roi_head') or {}
    for extractor_key in ('bbox_roi_extractor', 'mask_roi_extractor'):
        for i, extractor in enumerate(_as_list(roi_head.get(extractor_key))):
            if extractor.get('featmap_strides') is None:
                continue
            where = f'model.roi_head.{extractor_key}' + (f'.{i}' if isinstance(roi_head[extractor_key], Sequence)
                                                          else '') + '.featmap_strides'
            stated = list(extractor['featmap_strides'])
            rows.append((where, stated))
            if stated != wanted[:len(stated)]:
                problems.append(f'{where}={stated}, but the first {len(stated)} of the maps it pools from are at '
                                f'strides {maps[:len(stated)]}' + (f' ({wanted[:len(stated)]} once the neck is '
                                                                    f'fixed)' if wanted != maps else '') +
                                f': set featmap_strides={wanted[:len(stated)]}.')

    for head_key in ('decode_head', 'auxiliary_head'):
        heads = _as_list(model.get(head_key))
        for i, head in enumerate(heads):
            where = f'model.{head_key}' + (f'.{i}' if len(heads) > 1 else '')
            index = head.get('in_index', -1)
            indices = [index] if isinstance(index, int) else list(index)
            if any(not -len(maps) <= k < len(maps) for k in indices):
                problems.append(f'{where}.in_index={index} selects maps that do not exist: the head reads '
                                f'{len(maps)} maps, at strides {maps}.')
                continue
            selected, selected_wanted = [maps[k] for k in indices], [wanted[k] for k in indices
                                                                      if -len(wanted) <= k < len(wanted)]
            stated = head.get('feature_strides')
            if stated is None:
                continue
            stated = list(stated)
            rows.append((f'{where}.feature_strides', stated))
            if stated != selected_wanted:
                problems.append(f'{where}.feature_strides={stated}, but the maps its in_index={index} selects are at '
                                f'strides {selected}: set feature_strides={selected_wanted}.')
            elif _is_type(head, 'FPNHead') and len(stated) > 1:
                counted = [int(np.log2(s) - np.log2(stated[0])) for s in stated]  # as mmseg's FPNHead counts them
                exact = [Fraction(s, stated[0]) for s in stated]
                if [Fraction(2) ** k for k in counted] != exact:
                    problems.append(f'{where} is mmseg\'s FPNHead, which counts the 2x upsampling steps of '
                                    f'feature_strides={stated} as {counted} (int(log2(stride) - log2(first)), '
                                    f'float rounding), not as the strides\' ratios: use type=\'StrideFPNHead\' '
                                    f'(mmdynamixer), which counts them exactly.')
    return rows, problems


def _size_advice(generator: Mapping, stated: list, wanted: list) -> str:
    """How to keep an anchor generator's sizes (stride x base scale) when its strides change, where every level's
    stride changes by one ratio."""
    if len(stated) != len(wanted) or not all(isinstance(s, int) for s in stated):
        return ''
    ratios = {Fraction(s, w) for s, w in zip(stated, wanted)}
    if len(ratios) != 1:
        return ''
    ratio = ratios.pop()
    if generator.get('octave_base_scale') is not None:
        scale = generator['octave_base_scale']
        return (f' To keep the anchors\' sizes in pixels, multiply octave_base_scale by {ratio}: '
                f'octave_base_scale={scale} * {ratio} = {float(scale * ratio):.6g}.')
    if generator.get('scales') is not None:
        scales = ', '.join(f'{float(s * ratio):.6g}' for s in generator['scales'])
        return f' To keep the anchors\' sizes in pixels, multiply scales by {ratio}: scales=[{scales}].'
    return ''


def check_feature_strides(cfg: Mapping) -> None:
    """Raise ``ValueError`` listing every disagreement :func:`stride_report` finds between a DynaMixer backbone's
    strides, the FPN reading it, and the strides the heads are told."""
    _, problems = stride_report(cfg)
    if problems:
        raise ValueError('The strides of this config disagree (python tools/analysis/check_strides.py CONFIG '
                         'prints them all; the shipped dense configs have them right: inherit one, e.g. _base_ = '
                         "[__import__('mmdynamixer').config_file('dynamixer/retinanet_dynamixer-s_fpn_1x_coco.py')]):"
                         '\n- ' + '\n- '.join(problems))


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
    check_feature_strides(cfg)
    check_unreadable_policies(cfg)
    check_checkpoint_to_load(cfg)
