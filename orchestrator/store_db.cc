#include "orchestrator/store_db.h"

namespace loom {

Result<std::shared_ptr<StoreDb>> StoreDb::Open(const std::string& db_path, const Clock* clock) {
  // synchronous=NORMAL: in WAL mode a commit survives kill -9 and any crash of
  // loomd (it is in the OS's page cache); only a power cut can lose the last
  // steps, which a resumed agent then makes again. FULL would cost an fsync per
  // step (bench/RESULTS.md, "Agent loop").
  Db::Options options;
  options.durability = Db::Durability::kNormal;
  LOOM_ASSIGN_OR_RETURN(auto db, Db::OpenMigrated(db_path, options));
  Db::Options read_only;
  read_only.read_only = true;
  LOOM_ASSIGN_OR_RETURN(auto reader, Db::OpenMigrated(db_path, read_only));
  return std::shared_ptr<StoreDb>(new StoreDb(std::move(db), std::move(reader), clock));
}

void StoreDb::SetMasker(std::shared_ptr<const SecretMasker> masker) {
  MutexLock lock(&mu_);
  masker_ = std::move(masker);
}

Json StoreDb::Lock::Masked(const Json& j) const {
  owner_->mu_.AssertHeld();  // a Lock holds it (see store_db.h)
  return owner_->masker_ ? owner_->masker_->MaskJson(j) : j;
}

std::string StoreDb::Lock::Masked(const std::string& text) const {
  owner_->mu_.AssertHeld();
  return owner_->masker_ ? owner_->masker_->Mask(text) : text;
}

}  // namespace loom
