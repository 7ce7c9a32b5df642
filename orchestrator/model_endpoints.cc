// Model endpoints: rendezvous routing and health. See model_endpoints.h.
//
// Rendezvous (highest random weight) hashing rather than a ring: with a handful
// of replicas it needs no virtual nodes to spread evenly, the whole failover
// order falls out of one sort, and a replica that leaves takes only its own
// keys with it. The hash is FNV-1a with a splitmix64 finish, fixed here rather
// than std::hash so that a key routes the same way after loomd restarts.
#include "orchestrator/model_endpoints.h"

#include <algorithm>
#include <limits>
#include <set>

#include "common/log.h"

namespace loom {
namespace {

constexpr int64_t kNever = std::numeric_limits<int64_t>::max();

uint64_t Fnv1a(std::string_view s, uint64_t h = 14695981039346656037ull) {
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

uint64_t Mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

uint64_t Score(std::string_view key, std::string_view url) {
  return Mix(Fnv1a(url, Mix(Fnv1a(key))));
}

std::string Trim(std::string s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.erase(0, 1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.pop_back();
  return s;
}

int64_t Ns(std::chrono::milliseconds d) { return static_cast<int64_t>(d.count()) * 1'000'000; }

}  // namespace

Status CheckModelUrl(const std::string& url) {
  auto scheme_end = url.find("://");
  std::string scheme = scheme_end == std::string::npos ? "" : url.substr(0, scheme_end);
  bool has_host =
      scheme_end != std::string::npos && url.size() > scheme_end + 3 && url[scheme_end + 3] != '/';
  if ((scheme == "http" || scheme == "https") && has_host) return Status::Ok();
  return Status::InvalidArgument(
      "llm.url must be an http:// or https:// URL of an OpenAI-compatible API, e.g. "
      "http://127.0.0.1:8000/v1 (got '" +
      url + "')");
}

Result<std::vector<std::string>> ModelEndpoints::ParseUrls(const std::string& list) {
  std::vector<std::string> urls;
  std::set<std::string> seen;
  size_t start = 0;
  while (true) {
    size_t comma = list.find(',', start);
    std::string url =
        Trim(list.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    while (!url.empty() && url.back() == '/') url.pop_back();
    if (url.empty()) {
      return Status::InvalidArgument(
          "llm.url must be one base URL or several separated by commas, e.g. "
          "http://gpu1:8000/v1,http://gpu2:8000/v1 (got an empty one in '" +
          list + "')");
    }
    LOOM_RETURN_IF_ERROR(CheckModelUrl(url));
    if (!seen.insert(url).second) {
      return Status::InvalidArgument("llm.url names " + url +
                                     " twice: each replica once, or its share of the tasks "
                                     "doubles");
    }
    urls.push_back(std::move(url));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return urls;
}

ModelEndpoints::ModelEndpoints(std::vector<std::string> urls, Prober prober,
                               ModelEndpointsOptions options)
    : urls_(std::move(urls)),
      prober_(std::move(prober)),
      options_(options),
      clock_(options.clock ? options.clock : SystemClock::Default()) {
  MutexLock lock(&mu_);
  for (const std::string& url : urls_) {
    State s;
    s.status.url = url;
    s.next_probe_ns = NowNs();  // the first probe is due at once
    states_.push_back(std::move(s));
  }
}

ModelEndpoints::~ModelEndpoints() {
  {
    MutexLock lock(&mu_);
    stop_ = true;
  }
  wake_.notify_all();
  if (health_.joinable()) health_.join();
}

void ModelEndpoints::StartHealthChecks() {
  if (!health_.joinable()) health_ = std::thread([this] { HealthLoop(); });
}

std::vector<size_t> ModelEndpoints::RendezvousOrder(std::string_view key) const {
  std::vector<std::pair<uint64_t, size_t>> scored;
  scored.reserve(urls_.size());
  for (size_t i = 0; i < urls_.size(); ++i) scored.emplace_back(Score(key, urls_[i]), i);
  std::sort(scored.begin(), scored.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  });
  std::vector<size_t> order;
  order.reserve(scored.size());
  for (const auto& [score, i] : scored) order.push_back(i);
  return order;
}

std::vector<size_t> ModelEndpoints::Route(std::string_view key) const {
  std::vector<size_t> order = RendezvousOrder(key);
  std::vector<size_t> up;
  {
    MutexLock lock(&mu_);
    for (size_t i : order) {
      if (states_[i].status.up) up.push_back(i);
    }
  }
  return up.empty() ? order : up;
}

void ModelEndpoints::SetDown(State& s, const std::string& why) {
  s.status.last_error = why;
  if (!s.status.up) return;  // already down: its backoff goes on
  s.status.up = false;
  s.status.since_ms = clock_->NowMs();
  s.status.failed_probes = 0;
  s.next_probe_ns = NowNs() + Ns(options_.down_backoff);
  LOOM_LOG(kWarning) << "model endpoint " << s.status.url << " is down: " << why;
}

void ModelEndpoints::SetUp(State& s) {
  if (!s.status.up) {
    s.status.up = true;
    s.status.since_ms = clock_->NowMs();
    LOOM_LOG(kInfo) << "model endpoint " << s.status.url << " is up again";
  }
  s.status.failed_probes = 0;
  s.next_probe_ns =
      options_.probe_interval.count() > 0 ? NowNs() + Ns(options_.probe_interval) : kNever;
}

void ModelEndpoints::MarkDown(size_t i, const std::string& why) {
  {
    MutexLock lock(&mu_);
    ++states_[i].status.failed_requests;
    SetDown(states_[i], why);
  }
  wake_.notify_all();  // the health thread waits for the new, nearer probe
}

void ModelEndpoints::MarkAnswered(size_t i) {
  MutexLock lock(&mu_);
  ++states_[i].status.requests;
  if (!states_[i].status.up) SetUp(states_[i]);
}

void ModelEndpoints::RecordProbe(size_t i, const Status& result,
                                 std::chrono::milliseconds latency) {
  {
    MutexLock lock(&mu_);
    State& s = states_[i];
    if (result.ok()) {
      s.status.probe_latency_ms = latency.count();
      SetUp(s);
    } else {
      SetDown(s, result.message());
      ++s.status.failed_probes;
      // down_backoff after going down, then doubled per failed probe.
      int64_t backoff = Ns(options_.down_backoff) << std::min(s.status.failed_probes, 20);
      s.next_probe_ns = NowNs() + std::min(backoff, Ns(options_.max_down_backoff));
    }
  }
  wake_.notify_all();
}

int ModelEndpoints::ProbeDue() {
  std::vector<size_t> due;
  {
    MutexLock lock(&mu_);
    int64_t now = NowNs();
    for (size_t i = 0; i < states_.size(); ++i) {
      if (!states_[i].probing && states_[i].next_probe_ns <= now) {
        states_[i].probing = true;
        due.push_back(i);
      }
    }
  }
  for (size_t i : due) {
    int64_t started = NowNs();
    Status result = prober_(urls_[i]);
    RecordProbe(i, result, std::chrono::milliseconds((NowNs() - started) / 1'000'000));
    MutexLock lock(&mu_);
    states_[i].probing = false;
  }
  return static_cast<int>(due.size());
}

void ModelEndpoints::HealthLoop() {
  while (true) {
    ProbeDue();
    MutexLock lock(&mu_);
    if (stop_) return;
    int64_t next = kNever;
    for (const State& s : states_) next = std::min(next, s.next_probe_ns);
    int64_t wait_ns = std::clamp<int64_t>(next - NowNs(), 0, Ns(std::chrono::minutes(1)));
    if (wait_ns > 0) lock.WaitFor(&wake_, std::chrono::nanoseconds(wait_ns));
    if (stop_) return;
  }
}

std::vector<EndpointStatus> ModelEndpoints::Snapshot() const {
  MutexLock lock(&mu_);
  std::vector<EndpointStatus> out;
  out.reserve(states_.size());
  for (const State& s : states_) out.push_back(s.status);
  return out;
}

int ModelEndpoints::UpCount() const {
  MutexLock lock(&mu_);
  int n = 0;
  for (const State& s : states_) n += s.status.up ? 1 : 0;
  return n;
}

}  // namespace loom
