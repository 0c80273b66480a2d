// The accelerator decision: KVM only after a probe guest booted with it on this host boot.
#include "vm/accel.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace pexi::vm {
namespace {

AccelFacts usable_kvm() { return AccelFacts{true, true, "boot-1"}; }

TEST(AccelPlan, ExplicitRequestsAreObeyedWithoutProbing) {
  auto tcg = plan_accel(AccelRequest::tcg, usable_kvm(), std::nullopt);
  ASSERT_TRUE(tcg.verdict);
  EXPECT_EQ(tcg.verdict->accel, Accel::tcg);
  auto kvm = plan_accel(AccelRequest::kvm, AccelFacts{}, std::nullopt);
  ASSERT_TRUE(kvm.verdict);
  EXPECT_EQ(kvm.verdict->accel, Accel::kvm);
}

TEST(AccelPlan, NoUsableDeviceMeansTcgWithoutProbing) {
  auto none = plan_accel(AccelRequest::automatic, AccelFacts{false, false, "b"}, std::nullopt);
  ASSERT_TRUE(none.verdict);
  EXPECT_EQ(none.verdict->accel, Accel::tcg);
  EXPECT_EQ(none.verdict->reason, "no /dev/kvm");
  auto closed = plan_accel(AccelRequest::automatic, AccelFacts{true, false, "b"}, std::nullopt);
  ASSERT_TRUE(closed.verdict);
  EXPECT_EQ(closed.verdict->accel, Accel::tcg);
  EXPECT_THAT(closed.verdict->reason, ::testing::HasSubstr("not accessible"));
}

TEST(AccelPlan, ADeviceIsNotEnoughAProbeDecides) {
  // /dev/kvm exists and opens (like on these machines, where guests still hang): probe.
  EXPECT_FALSE(plan_accel(AccelRequest::automatic, usable_kvm(), std::nullopt).verdict);
}

TEST(AccelPlan, CachedVerdictHoldsForThisBootOnly) {
  const AccelCache tcg_cached{"boot-1", Accel::tcg, "KVM probe guest did not boot"};
  auto same_boot = plan_accel(AccelRequest::automatic, usable_kvm(), tcg_cached);
  ASSERT_TRUE(same_boot.verdict);
  EXPECT_EQ(same_boot.verdict->accel, Accel::tcg);
  EXPECT_TRUE(same_boot.verdict->cached);
  const AccelCache kvm_cached{"boot-1", Accel::kvm, "booted"};
  auto kvm = plan_accel(AccelRequest::automatic, usable_kvm(), kvm_cached);
  ASSERT_TRUE(kvm.verdict);
  EXPECT_EQ(kvm.verdict->accel, Accel::kvm);
  const AccelCache other_boot{"boot-0", Accel::kvm, "booted"};
  EXPECT_FALSE(plan_accel(AccelRequest::automatic, usable_kvm(), other_boot).verdict)
      << "a verdict from an earlier host boot is probed again";
  AccelFacts no_id = usable_kvm();
  no_id.boot_id.clear();
  EXPECT_FALSE(plan_accel(AccelRequest::automatic, no_id, AccelCache{"", Accel::kvm, ""}).verdict);
  // The cache never overrides a missing device.
  auto gone = plan_accel(AccelRequest::automatic, AccelFacts{false, false, "boot-1"}, kvm_cached);
  ASSERT_TRUE(gone.verdict);
  EXPECT_EQ(gone.verdict->accel, Accel::tcg);
}

TEST(AccelProbe, OnlyABootedGuestMeansKvm) {
  EXPECT_EQ(verdict_from_probe({true, 0.4, ""}).accel, Accel::kvm);
  const auto hung = verdict_from_probe({false, 3.0, "no poweroff within 3000 ms"});
  EXPECT_EQ(hung.accel, Accel::tcg);
  EXPECT_THAT(hung.reason, ::testing::HasSubstr("no poweroff within 3000 ms"));
}

TEST(AccelCacheFile, RoundTripAndGarbage) {
  const AccelCache c{"0a1b-boot", Accel::kvm, "booted in 0.4 s"};
  auto back = cache_from_json(cache_to_json(c));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->boot_id, c.boot_id);
  EXPECT_EQ(back->accel, Accel::kvm);
  EXPECT_EQ(back->reason, c.reason);
  for (const char* bad :
       {"", "{}", "[1]", R"({"boot_id":"x","accel":"hvf"})", R"({"boot_id":1,"accel":"kvm"})"})
    EXPECT_FALSE(cache_from_json(bad)) << bad;
}

TEST(AccelRequestText, Parses) {
  EXPECT_EQ(*parse_accel_request("auto"), AccelRequest::automatic);
  EXPECT_EQ(*parse_accel_request("kvm"), AccelRequest::kvm);
  EXPECT_EQ(*parse_accel_request("tcg"), AccelRequest::tcg);
  EXPECT_FALSE(parse_accel_request("KVM"));
  EXPECT_FALSE(parse_accel_request(""));
}

}  // namespace
}  // namespace pexi::vm
