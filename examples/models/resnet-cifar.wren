# resnet-cifar (the zoo's `resnet-cifar`): ResNet-8 for CIFAR-10 (He et al. 2016, section 4.2,
# n = 1). 78,042 parameters for 32x32x3 inputs and 10 classes; any input size works.
#
# A basic block: conv 3x3 + BN + ReLU, conv 3x3 + BN, add the shortcut, ReLU. The shortcut is
# the block's input where the shape is kept, else a 1x1 conv + BN with the same stride.
# `from=` names an earlier value (an op's name); without it an op takes the line above's output.
input image auto
labels label

conv2d stem.conv out=16 kernel=3 padding=1 bias=false     # [N, 16, 32, 32]
batch_norm2d stem.bn
relu stem.relu

# Stage 1: 16 channels, identity shortcut.
conv2d stage1.block1.conv1 out=16 kernel=3 padding=1 bias=false
batch_norm2d stage1.block1.bn1
relu stage1.block1.relu1
conv2d stage1.block1.conv2 out=16 kernel=3 padding=1 bias=false
batch_norm2d stage1.block1.bn2
add stage1.block1.add from=stage1.block1.bn2,stem.relu
relu stage1.block1.out                                    # [N, 16, 32, 32]

# Stage 2: 32 channels at half the size, projection shortcut.
conv2d stage2.block1.conv1 out=32 kernel=3 stride=2 padding=1 bias=false
batch_norm2d stage2.block1.bn1
relu stage2.block1.relu1
conv2d stage2.block1.conv2 out=32 kernel=3 padding=1 bias=false
batch_norm2d stage2.block1.bn2
conv2d stage2.block1.shortcut.conv out=32 kernel=1 stride=2 bias=false from=stage1.block1.out
batch_norm2d stage2.block1.shortcut.bn
add stage2.block1.add from=stage2.block1.bn2,stage2.block1.shortcut.bn
relu stage2.block1.out                                    # [N, 32, 16, 16]

# Stage 3: 64 channels at half the size again.
conv2d stage3.block1.conv1 out=64 kernel=3 stride=2 padding=1 bias=false
batch_norm2d stage3.block1.bn1
relu stage3.block1.relu1
conv2d stage3.block1.conv2 out=64 kernel=3 padding=1 bias=false
batch_norm2d stage3.block1.bn2
conv2d stage3.block1.shortcut.conv out=64 kernel=1 stride=2 bias=false from=stage2.block1.out
batch_norm2d stage3.block1.shortcut.bn
add stage3.block1.add from=stage3.block1.bn2,stage3.block1.shortcut.bn
relu stage3.block1.out                                    # [N, 64, 8, 8]

global_avg_pool pool                                      # [N, 64]
linear fc out=classes
softmax_cross_entropy loss
