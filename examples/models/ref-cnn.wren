# ref-cnn (the zoo's `ref-cnn`, include/wren/models.h): two conv + max-pool stages and two
# linear layers. 421,642 parameters on 28x28x1 inputs with 10 classes.
input image auto             # C H W from the dataset, e.g. [N, 1, 28, 28]
labels label                 # one class index per image

conv2d conv1 out=32 kernel=3 padding=1     # [N, 32, 28, 28]
relu
max_pool2d kernel=2                        # [N, 32, 14, 14]
conv2d conv2 out=64 kernel=3 padding=1     # [N, 64, 14, 14]
relu
max_pool2d kernel=2                        # [N, 64, 7, 7]

linear fc1 out=128           # flattens [N, 64, 7, 7] to 3136 features
relu
linear fc2 out=classes       # the logits: one per class of the dataset
softmax_cross_entropy loss   # mean cross-entropy of the current value and the labels
