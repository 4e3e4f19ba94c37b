# ref-cnn-bn (the zoo's `ref-cnn-bn`): ref-cnn with a batch norm after each convolution; the
# convolutions drop their bias, which the batch norm's beta makes redundant.
input image auto
labels label

conv2d conv1 out=32 kernel=3 padding=1 bias=false
batch_norm2d bn1             # eps=1e-5 momentum=0.1 (PyTorch's defaults)
relu
max_pool2d kernel=2
conv2d conv2 out=64 kernel=3 padding=1 bias=false
batch_norm2d bn2
relu
max_pool2d kernel=2

linear fc1 out=128
relu
linear fc2 out=classes
softmax_cross_entropy loss
