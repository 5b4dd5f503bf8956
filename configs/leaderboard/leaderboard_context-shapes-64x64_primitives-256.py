# The leaderboard's settings (python tools/leaderboard.py): every op in the same head and network,
# trained from the same seeds on the same in-memory data, one thread per run.
#
# seg: ContextShapes (projects/segmentation/context_shapes.py): a corner cue's colour decides the class
# of every shape at least `gap` pixels away. Network: a 3-conv stem (stride 4, receptive field 15 px)
# + AttnHead with the op (or mmseg's FCNHead as the baseline row), 32 channels on a 16 x 16 map;
# the head's three 3x3 convs and the bilinear upsampling let an output pixel see 24 px away at most
# (tests/tools/test_leaderboard.py), so without the op no shape pixel sees the cue 28 px away.
seg = dict(
    size=64, gap=28, cue_size=6, num_train=1024, num_val=128, seed=0,
    channels=32, batch_size=16, iters=600, lr=2e-3, weight_decay=1e-4)
# pc: SyntheticPrimitives classification (6 primitives, 256 points) with the op in the 4 attention
# layers of the tiny PCT demo network (configs/pct/pct-tiny_1xb16-8e_synthetic-primitives-256.py).
pc = dict(
    num_points=256, num_train=480, num_val=180, seed=0,
    model=dict(type='PCTClassifier', num_classes=6, in_channels=3, embed_channels=(32, 32),
               neighbor_stages=((128, 16, 64), (64, 16, 64)), encoder_mlp=(64, 64), num_layers=4,
               fuse_channels=256, head_channels=(128, 64), dropout=0.3, label_smoothing=0.1),
    batch_size=16, iters=240, lr=3e-3, weight_decay=1e-4)
