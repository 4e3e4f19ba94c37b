conv2d c out=1 padding=2147483647
linear fc out=10
softmax_ce
