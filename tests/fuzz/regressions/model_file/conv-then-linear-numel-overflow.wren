conv2d c out=2147483647 kernel=1
flatten
linear fc out=2147483647
softmax_ce
