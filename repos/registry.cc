// RepoRegistry: the registered repositories, validated on registration and
// persisted by the caller as JSON. A mutex guards the map; libgit2 work (opening,
// cloning) happens outside it.
#include <git2.h>

#include <filesystem>

#include "common/json.h"
#include "repos/internal/git_util.h"
#include "repos/workspace.h"

namespace loom::repos {
namespace {

using internal::GitError;
using internal::GitPtr;

Status ValidateName(std::string_view name) {
  bool ok = !name.empty() && name.size() <= 64 && name.front() != '.';
  for (char c : name) {
    ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-');
  }
  if (!ok) {
    return Status::InvalidArgument("bad repository name '" + std::string(name) +
                                   "': use 1-64 of [A-Za-z0-9_.-], not starting with '.'");
  }
  return Status::Ok();
}

Result<std::string> Absolute(const std::string& path) {
  std::error_code ec;
  std::filesystem::path p = std::filesystem::absolute(path, ec);
  if (ec) return Status::InvalidArgument("bad path '" + path + "': " + ec.message());
  return p.lexically_normal().string();
}

Json SettingsToJson(const RepoSettings& s) {
  return Json{{"target_branch", s.target_branch},
              {"allowed_globs", s.allowed_globs},
              {"protected_globs", s.protected_globs},
              {"author_name", s.author_name},
              {"author_email", s.author_email}};
}

bool GetString(const Json& j, const char* key, std::string* out) {
  auto it = j.find(key);
  if (it == j.end()) return true;
  if (!it->is_string()) return false;
  *out = it->get<std::string>();
  return true;
}

bool GetStrings(const Json& j, const char* key, std::vector<std::string>* out) {
  auto it = j.find(key);
  if (it == j.end()) return true;
  if (!it->is_array()) return false;
  out->clear();
  for (const Json& v : *it) {
    if (!v.is_string()) return false;
    out->push_back(v.get<std::string>());
  }
  return true;
}

}  // namespace

Status RepoRegistry::Add(RepoRecord record) {
  std::lock_guard<std::mutex> lock(mu_);
  if (records_.count(record.name)) {
    return Status::AlreadyExists("repository '" + record.name + "' is already registered");
  }
  std::string name = record.name;
  records_.emplace(std::move(name), std::move(record));
  return Status::Ok();
}

Result<RepoRecord> RepoRegistry::RegisterLocal(std::string name, std::string path,
                                               RepoSettings settings) {
  LOOM_RETURN_IF_ERROR(ValidateName(name));
  LOOM_ASSIGN_OR_RETURN(std::string abs, Absolute(path));
  LOOM_RETURN_IF_ERROR(internal::ValidateRepository(abs, settings));
  RepoRecord record{std::move(name), std::move(abs), "", std::move(settings)};
  LOOM_RETURN_IF_ERROR(Add(record));
  return record;
}

Result<RepoRecord> RepoRegistry::RegisterClone(std::string name, std::string source,
                                               std::string dest, RepoSettings settings) {
  LOOM_RETURN_IF_ERROR(ValidateName(name));
  LOOM_ASSIGN_OR_RETURN(std::string abs, Absolute(dest));
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (records_.count(name)) {
      return Status::AlreadyExists("repository '" + name + "' is already registered");
    }
  }
  std::error_code ec;
  if (std::filesystem::exists(abs, ec)) {
    return Status::AlreadyExists("clone destination '" + abs + "' already exists");
  }
  internal::EnsureLibgit2();
  git_clone_options opts = GIT_CLONE_OPTIONS_INIT;
  opts.bare = 1;
  git_repository* raw = nullptr;
  int rc = git_clone(&raw, source.c_str(), abs.c_str(), &opts);
  if (rc < 0) {
    Status s = GitError(rc, "cannot clone '" + source + "'");
    std::filesystem::remove_all(abs, ec);
    return Status::Unavailable(s.message());
  }
  GitPtr<git_repository> repo(raw);
  // A bare clone has a local branch only for the remote's HEAD: add the target.
  std::string local = "refs/heads/" + settings.target_branch;
  git_oid oid;
  if (git_reference_name_to_id(&oid, repo.get(), local.c_str()) == GIT_ENOTFOUND &&
      git_reference_name_to_id(&oid, repo.get(),
                               ("refs/remotes/origin/" + settings.target_branch).c_str()) == 0) {
    GitPtr<git_reference> ref;
    LOOM_GIT(git_reference_create(Out(ref), repo.get(), local.c_str(), &oid, 0, "loom: target"),
             "cannot create branch '" + settings.target_branch + "'");
  }
  repo.reset();
  Status valid = internal::ValidateRepository(abs, settings);
  if (!valid.ok()) {
    std::filesystem::remove_all(abs, ec);
    return valid.WithContext("cloned '" + source + "'");
  }
  RepoRecord record{std::move(name), std::move(abs), std::move(source), std::move(settings)};
  LOOM_RETURN_IF_ERROR(Add(record));
  return record;
}

Status RepoRegistry::Unregister(std::string_view name) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = records_.find(name);
  if (it == records_.end()) {
    return Status::NotFound("repository '" + std::string(name) + "' is not registered");
  }
  records_.erase(it);
  return Status::Ok();
}

Result<RepoRecord> RepoRegistry::Get(std::string_view name) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = records_.find(name);
  if (it == records_.end()) {
    return Status::NotFound("repository '" + std::string(name) + "' is not registered");
  }
  return it->second;
}

std::vector<RepoRecord> RepoRegistry::List() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<RepoRecord> out;
  for (const auto& [name, record] : records_) out.push_back(record);
  return out;
}

std::string RepoRegistry::ToJson() const {
  Json arr = Json::array();
  for (const RepoRecord& r : List()) {
    arr.push_back(Json{{"name", r.name},
                       {"path", r.path},
                       {"origin", r.origin},
                       {"settings", SettingsToJson(r.settings)}});
  }
  return DumpJson(Json{{"repositories", arr}}, 2);
}

Status RepoRegistry::LoadJson(std::string_view text) {
  LOOM_ASSIGN_OR_RETURN(Json j, ParseJson(text));
  auto repos = j.is_object() ? j.find("repositories") : j.end();
  if (repos == j.end() || !repos->is_array()) {
    return Status::InvalidArgument("registry JSON must be {\"repositories\": [...]}");
  }
  std::map<std::string, RepoRecord, std::less<>> loaded;
  for (const Json& e : *repos) {
    RepoRecord r;
    bool ok = e.is_object() && GetString(e, "name", &r.name) && GetString(e, "path", &r.path) &&
              GetString(e, "origin", &r.origin);
    auto s = e.is_object() ? e.find("settings") : e.end();
    if (ok && s != e.end()) {
      ok = s->is_object() && GetString(*s, "target_branch", &r.settings.target_branch) &&
           GetStrings(*s, "allowed_globs", &r.settings.allowed_globs) &&
           GetStrings(*s, "protected_globs", &r.settings.protected_globs) &&
           GetString(*s, "author_name", &r.settings.author_name) &&
           GetString(*s, "author_email", &r.settings.author_email);
    }
    if (!ok || r.path.empty()) {
      return Status::InvalidArgument("registry JSON: malformed entry " + DumpJson(e));
    }
    LOOM_RETURN_IF_ERROR(ValidateName(r.name));
    if (loaded.count(r.name)) {
      return Status::InvalidArgument("registry JSON: repository '" + r.name + "' appears twice");
    }
    std::string key = r.name;
    loaded.emplace(std::move(key), std::move(r));
  }
  std::lock_guard<std::mutex> lock(mu_);
  records_ = std::move(loaded);
  return Status::Ok();
}

}  // namespace loom::repos
