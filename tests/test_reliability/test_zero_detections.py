"""Validation with 0 detections on the whole set: logged, the run goes on
(no code change needed: CocoMetric logs an error and returns {}, MMEngine's
CheckpointHook skips save_best with a warning) (docs/reliability.md)."""
import glob
import os.path as osp


def test_zero_detections_are_logged_and_training_goes_on(
        toy_copy, tmp_path, rel):
    from mmengine.config import Config
    from mmengine.runner import Runner
    path = tmp_path / 'tiny.py'
    path.write_text(rel.config_text(toy_copy))
    cfg = Config.fromfile(str(path))
    cfg.work_dir = str(tmp_path / 'wd')
    cfg.experiment_name = 'zero_det'
    cfg.model.test_cfg.max_per_img = 0  # no detection at all
    cfg.train_cfg = dict(by_epoch=True, max_epochs=2, val_interval=1)
    cfg.default_hooks.checkpoint = dict(
        type='CheckpointHook', interval=1, save_best='coco/bbox_mAP')
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter > 0 and runner.epoch == 2
    (log, ) = glob.glob(osp.join(cfg.work_dir, '*', '*.log'))
    text = open(log).read()
    assert text.count('The testing results of the whole dataset is '
                      'empty.') == 2
    assert 'the behavior to save the best checkpoint will be skipped' in text
    assert osp.isfile(osp.join(cfg.work_dir, 'epoch_2.pth'))
