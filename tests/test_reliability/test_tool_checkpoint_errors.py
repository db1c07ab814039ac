"""tools/test.py with a truncated checkpoint or one of another class count:
one 'error:' message, exit status 1, no traceback (docs/reliability.md)."""
import pytest
import torch


@pytest.fixture
def tiny(toy_copy, tmp_path, rel):
    path = tmp_path / 'tiny.py'
    path.write_text(rel.config_text(toy_copy))
    return str(path)


def _build(cfg_path, **head):
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import dfine_mmdet  # noqa: F401
    init_default_scope('mmdet')
    cfg = Config.fromfile(cfg_path)
    cfg.model.bbox_head.update(head)
    return MODELS.build(cfg.model)


@pytest.mark.slow
def test_test_py_errors(tiny, tmp_path, rel):
    ckpt80 = str(tmp_path / 'coco80.pth')
    torch.save({'state_dict': _build(tiny, num_classes=80).state_dict()},
               ckpt80)
    rc, out = rel.run(
        ['tools/test.py', tiny, ckpt80, '--work-dir',
         str(tmp_path / 'wd1')])
    assert rc == 1 and 'Traceback' not in out, out[-3000:]
    assert 'error: the checkpoint has 80 classes but the config builds 3' \
        in out, out[-3000:]

    truncated = str(tmp_path / 'truncated.pth')
    with open(ckpt80, 'rb') as f:
        data = f.read()
    with open(truncated, 'wb') as f:
        f.write(data[:len(data) // 2])
    rc, out = rel.run([
        'tools/test.py', tiny, truncated, '--work-dir',
        str(tmp_path / 'wd2')
    ])
    assert rc == 1 and 'Traceback' not in out, out[-3000:]
    assert out.strip().splitlines()[-1].startswith(
        f'error: cannot load checkpoint {truncated}: the file is truncated ('
    ), out[-3000:]
