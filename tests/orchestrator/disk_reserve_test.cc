// DiskReserve on a real filesystem of a known size: a 16 MiB tmpfs mounted by
// the test (root only; skipped otherwise, saying so).
#include "orchestrator/disk_reserve.h"

#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "tests/support/temp_dir.h"

namespace loom {
namespace {

namespace fs = std::filesystem;

class DiskReserveTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root to mount a small tmpfs";
    if (::mount("tmpfs", dir_.path().c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "size=16m") != 0) {
      GTEST_SKIP() << "cannot mount a tmpfs on " << dir_.path() << ": " << std::strerror(errno);
    }
    mounted_ = true;
  }
  void TearDown() override {
    if (mounted_) ::umount2(dir_.path().c_str(), MNT_DETACH);
  }

  // Writes `mib` MiB into `name` (fewer when the disk fills).
  void Fill(const std::string& name, int mib) {
    std::ofstream out(dir_.File(name), std::ios::binary);
    std::string block(1 << 20, 'x');
    for (int i = 0; i < mib && out; ++i) out.write(block.data(), block.size());
  }

  uint64_t BallastBytes() {
    std::error_code ec;
    auto size = fs::file_size(dir_.File("disk-reserve"), ec);
    return ec ? 0 : size;
  }

  testing::TempDir dir_;
  bool mounted_ = false;
};

TEST_F(DiskReserveTest, HoldsItsBallastWhileTheDiskHasRoom) {
  DiskReserve reserve(dir_.path(), 4 << 20);
  EXPECT_TRUE(reserve.Check().ok());
  EXPECT_EQ(BallastBytes(), 4u << 20);
  struct stat st;
  ASSERT_EQ(::stat(dir_.File("disk-reserve").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(DiskReserveTest, AFullDiskIsReportedAndTheReserveGivesRoomToRecordIt) {
  DiskReserve reserve(dir_.path(), 4 << 20);
  ASSERT_TRUE(reserve.Check().ok());
  Fill("fill", 64);  // until ENOSPC
  Status full = reserve.Check();
  EXPECT_EQ(full.code(), StatusCode::kResourceExhausted);
  EXPECT_NE(full.message().find(dir_.path()), std::string::npos) << full.message();

  reserve.Release();
  EXPECT_EQ(BallastBytes(), 0u);
  Fill("record", 2);  // what parks the task fits
  EXPECT_EQ(fs::file_size(dir_.File("record")), 2u << 20);
  EXPECT_FALSE(reserve.Check().ok()) << "still full: no room for the ballast twice over";

  fs::remove(dir_.File("fill"));  // a person frees space
  EXPECT_TRUE(reserve.Check().ok());
  EXPECT_EQ(BallastBytes(), 4u << 20) << "made again";
}

TEST_F(DiskReserveTest, ZeroBytesDisablesTheReserve) {
  DiskReserve reserve(dir_.path(), 0);
  Fill("fill", 64);
  EXPECT_TRUE(reserve.Check().ok());
  EXPECT_EQ(BallastBytes(), 0u);
}

}  // namespace
}  // namespace loom
