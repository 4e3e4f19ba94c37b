// End to end: plain SGD on ref-cnn memorises a small fixed batch (the loss goes to ~0).
#include <gtest/gtest.h>

#include "support/gradcheck.h"
#include "wren/executor.h"
#include "wren/models.h"

namespace wren {
namespace {

TEST(RefCnn, SgdMemorisesASmallBatch) {
  Graph g = ref_cnn();
  constexpr int kBatch = 16;
  auto created = Executor<float>::create(g, make_cpu_backend<float>(), {.batch_size = kBatch, .seed = 1});
  ASSERT_TRUE(created.ok()) << created.error().message();
  Executor<float>& ex = **created;
  // Random images in [0, 1) with random labels: nothing to generalise, only to memorise.
  ASSERT_TRUE(ex.set_input("image", testing::random_vector<float>(kBatch * 784, 42, 0.0, 1.0)).ok());
  std::vector<int32_t> labels(kBatch);
  for (int i = 0; i < kBatch; ++i) labels[static_cast<size_t>(i)] = (i * 3 + 1) % 10;
  ASSERT_TRUE(ex.set_labels("label", labels).ok());

  float first = 0, last = 0;
  for (int step = 0; step < 200; ++step) {
    ASSERT_TRUE(ex.forward(Mode::kTrain).ok());
    last = ex.loss();
    if (step == 0) first = last;
    ASSERT_TRUE(ex.backward().ok());
    float* p = ex.params().data;
    const float* grad = ex.grads().data;
    for (int64_t i = 0; i < ex.params().numel(); ++i) p[i] -= 0.1f * grad[i];
  }
  // Initial loss is near ln 10 = 2.30 (uniform predictions); memorised, it is near 0.
  EXPECT_NEAR(first, std::log(10.0f), 0.2f);
  // (Measured: 0.0064 after 200 steps at lr 0.1; 1.8 after 60 steps, so the bound has teeth.)
  EXPECT_LT(last, 0.02f) << "first " << first;
}

}  // namespace
}  // namespace wren
