# Runtime of the segmentation configs: mmseg registries, our heads/datasets through custom_imports.
default_scope = 'mmseg'
custom_imports = dict(imports=['projects.segmentation', 'projects.hooks'], allow_failed_imports=False)
# projects/hooks.py: RNG states + sampler position in checkpoints (an exact --resume), and a clean
# stop on a NaN/Inf loss (action='skip' drops the step instead). Merged with mmengine's defaults.
default_hooks = dict(
    exact_resume=dict(type='ExactResumeHook'),
    non_finite_loss=dict(type='NonFiniteLossHook', action='stop'))
env_cfg = dict(
    cudnn_benchmark=True,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),  # tools/train.py switches to gloo when there is no CUDA
)
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='SegLocalVisualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(by_epoch=False)
log_level = 'INFO'
load_from = None
resume = False
tta_model = dict(type='SegTTAModel')
