# Static 640x640, batch 1: outputs dets [1, 300, 5] (x1, y1, x2, y2, score in
# input pixels) and labels [1, 300] (0..num_classes-1), top-300 like the
# official D-FINE post-processor (no NMS, no score threshold in the graph).
_base_ = ['./onnx_config.py']

onnx_config = dict(input_shape=(640, 640))
codebase_config = dict(
    type='mmdet',
    task='ObjectDetection',
    model_type='end2end',
    # D-FINE has no NMS; these fields only matter to MMDeploy's SDK pipeline
    # dump. keep_top_k equals the model's test_cfg.max_per_img (300).
    post_processing=dict(
        score_threshold=0.0,
        confidence_threshold=0.0,
        iou_threshold=1.0,
        max_output_boxes_per_class=300,
        pre_top_k=-1,
        keep_top_k=300,
        background_label_id=-1))
