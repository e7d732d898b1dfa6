// herd chat: an interactive multi-turn conversation in the terminal. The conversation lives in the KV cache:
// each turn renders and processes only the new tokens (the end of the previous reply, the new user message and
// the assistant header), never the whole history again. /save and /load store the transcript together with the
// cache, so a loaded conversation continues without recomputation.
//
// With --tokens the input lines are comma-separated token ids appended as they are and replies are printed as
// ids: that is how models without a tokenizer (the test fixtures) are driven.
#include <editline/readline.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/common.h"
#include "core/file.h"
#include "core/json.h"
#include "core/thread_pool.h"
#include "runtime/chat.h"
#include "runtime/engine.h"

namespace herd::cli {
namespace {

constexpr std::string_view kSaveMagic = "HERDCHAT1\n";

struct ChatOptions {
  CommonOptions common;
  std::string system;
  int64_t n_predict = 512;  // per reply
  SamplingOptions sampling;
  bool tokens_mode = false;
  int64_t max_tiles = runtime::kDefaultMaxTiles;  // per /image
};

class ChatSession {
 public:
  ChatSession(const ChatOptions& o, const runtime::SamplingParams& sampling, runtime::LoadedModel& m,
              std::unique_ptr<model::ModelState> state, ThreadPool& pool)
      : o_(o),
        sampling_(sampling),
        m_(m),
        state_(std::move(state)),
        pool_(pool),
        fingerprint_(runtime::ModelFingerprint(m)) {}

  Status Init() {
    if (o_.tokens_mode) return Status::Ok();
    if (!m_.tokenizer) return InvalidArgument("chat needs a tokenizer (or --tokens to chat in token ids)");
    HERD_ASSIGN_OR_RETURN(format_, runtime::DetectChatFormat(*m_.tokenizer));
    for (int32_t id : runtime::ChatStopIds(*m_.tokenizer, format_)) {
      if (std::find(m_.stop_ids.begin(), m_.stop_ids.end(), id) == m_.stop_ids.end()) m_.stop_ids.push_back(id);
    }
    HERD_ASSIGN_OR_RETURN(end_of_turn_, EndOfTurnId());
    return Status::Ok();
  }

  // One user turn: renders only what the cache does not hold yet, generates the reply and streams it.
  Status Turn(const std::string& line) {
    std::vector<int32_t> fresh = pending_;
    // The queued images, encoded in one batch; they are used by this turn whether or not it succeeds.
    runtime::EncodedImages enc;
    if (!images_.empty()) {
      auto encoded = runtime::EncodeImages(m_, images_, o_.max_tiles, pool_);
      images_.clear();
      HERD_RETURN_IF_ERROR(encoded.status());
      enc = std::move(encoded).value();
    }
    if (o_.tokens_mode) {
      HERD_ASSIGN_OR_RETURN(std::vector<int32_t> ids, ParseTokenList(line));
      fresh.insert(fresh.end(), ids.begin(), ids.end());
    } else {
      std::vector<runtime::ChatMessage> msgs;
      const bool first = state_->n_past() == 0;
      if (first && !o_.system.empty()) msgs.push_back({"system", o_.system});
      msgs.push_back({"user", line, enc.layouts});
      HERD_ASSIGN_OR_RETURN(std::vector<int32_t> ids,
                            runtime::RenderChat(*m_.tokenizer, format_, msgs, /*add_bos=*/first, true));
      fresh.insert(fresh.end(), ids.begin(), ids.end());
    }
    if (state_->n_past() + static_cast<int64_t>(fresh.size()) >= state_->n_ctx()) {
      return OutOfRange("the conversation is full (" + std::to_string(state_->n_past()) + " + " +
                        std::to_string(fresh.size()) + " tokens, context " + std::to_string(state_->n_ctx()) +
                        "): /reset, or restart with a larger -c");
    }
    HERD_ASSIGN_OR_RETURN(runtime::ImageFusion fusion, runtime::FuseImagesFor(m_, fresh, enc));
    const model::EmbeddingOverride embeds = fusion.Override();
    runtime::GenerateOptions go;
    go.n_predict =
        std::min<int64_t>(o_.n_predict, state_->n_ctx() - state_->n_past() - static_cast<int64_t>(fresh.size()));
    go.prompt_embeds = fusion.empty() ? nullptr : &embeds;
    go.sampling = sampling_;
    go.sampling.seed = sampling_.seed + static_cast<uint64_t>(turns_);
    const bool tokens_mode = o_.tokens_mode;
    auto r = runtime::Generate(m_, *state_, pool_, fresh, go,
                               [tokens_mode](std::string_view piece) { return tokens_mode || WriteStdout(piece); });
    if (!r.ok()) {
      return r.status();
    }
    std::string tail;
    if (tokens_mode) {
      for (size_t i = 0; i < r->tokens.size(); ++i) tail += (i ? "," : "") + std::to_string(r->tokens[i]);
    }
    // Nobody can read the reply: the error ends the session.
    if (r->stop_reason == runtime::StopReason::kCancelled || !WriteStdout(tail + "\n")) return FinishOutput();
    ++turns_;
    processed_total_ += static_cast<int64_t>(fresh.size());
    cached_.insert(cached_.end(), fresh.begin(), fresh.end());
    cached_.insert(cached_.end(), r->tokens.begin(), r->tokens.end() - r->n_uncached);
    // What the next turn must process first: the reply's last token if it was not forwarded, and the end of turn.
    pending_.assign(r->tokens.end() - r->n_uncached, r->tokens.end());
    if (!o_.tokens_mode) {
      pending_.push_back(r->stop_token ? *r->stop_token : end_of_turn_);
      if (turns_ == 1 && !o_.system.empty()) transcript_.push_back({"system", o_.system});
      transcript_.push_back({"user", line});
      transcript_.push_back({"assistant", r->text});
    }
    const double gen_tps = r->gen_ms > 0 ? 1000.0 * static_cast<double>(r->tokens.size()) / r->gen_ms : 0;
    std::fprintf(stderr,
                 "[turn %d: processed %zu new tokens, generated %zu (%.1f tokens/s, stop: %s), cache %" PRId64
                 "/%" PRId64 "]\n",
                 turns_, fresh.size(), r->tokens.size(), gen_tps,
                 std::string(runtime::StopReasonName(r->stop_reason)).c_str(), state_->n_past(), state_->n_ctx());
    return Status::Ok();
  }

  void Reset() {
    state_->Reset();
    cached_.clear();
    pending_.clear();
    transcript_.clear();
    images_.clear();
    turns_ = 0;
  }

  // /image FILE: decoded now (a bad file is reported at once), encoded with the next turn, whose user message
  // shows it where the text says <__media__>, else before the text.
  Status AddImage(const std::string& path) {
    if (m_.vision == nullptr && m_.vision_error.ok()) {
      return NotSupported("this model has no vision tower: restart with --mmproj FILE");
    }
    if (!m_.vision_error.ok()) return m_.vision_error;
    auto image = vision::ReadImageFile(path);
    if (!image.ok()) return image.status().WithContext("/image " + path);
    images_.push_back(std::move(image).value());
    std::fprintf(stderr, "[image %zu queued for the next message: %lldx%lld]\n", images_.size(),
                 static_cast<long long>(images_.back().width), static_cast<long long>(images_.back().height));
    return Status::Ok();
  }

  // The save file: kSaveMagic, a u64 header length, the JSON header (model fingerprint, mode, tokens,
  // transcript), then the KV cache blob of model::ModelState::SaveTo. Written whole or not at all, never over the
  // model's own files.
  Status Save(const std::string& path) const {
    nlohmann::json j;
    j["model"] = o_.common.model;
    j["model_fingerprint"] = fingerprint_;
    j["tokens_mode"] = o_.tokens_mode;
    j["turns"] = turns_;
    j["cached_tokens"] = cached_;
    j["pending_tokens"] = pending_;
    nlohmann::json msgs = nlohmann::json::array();
    for (const auto& msg : transcript_) msgs.push_back({{"role", msg.role}, {"content", msg.content}});
    j["messages"] = msgs;
    std::string kv;
    HERD_RETURN_IF_ERROR(state_->SaveTo(&kv));
    const std::string header = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    HERD_ASSIGN_OR_RETURN(std::unique_ptr<AtomicFile> out, AtomicFile::Create(path, m_.files.sources));
    const uint64_t n = header.size();
    HERD_RETURN_IF_ERROR(out->Write(kSaveMagic));
    HERD_RETURN_IF_ERROR(out->Write(&n, sizeof n));
    HERD_RETURN_IF_ERROR(out->Write(header));
    HERD_RETURN_IF_ERROR(out->Write(kv));
    HERD_RETURN_IF_ERROR(out->Commit());
    std::fprintf(stderr, "[saved %zu messages and %" PRId64 " cached positions (%.2f MiB) to %s]\n", transcript_.size(),
                 state_->n_past(), static_cast<double>(kv.size()) / (1 << 20), path.c_str());
    return Status::Ok();
  }

  // Loads a save of this very model (same config and tensor table: ModelFingerprint) in the same mode, whose
  // tokens are all in the vocabulary and agree with its KV cache. On an error the session is unchanged, except
  // when the KV blob loads but disagrees with the transcript: then the conversation is reset.
  Status Load(const std::string& path) {
    HERD_ASSIGN_OR_RETURN(std::string bytes, ReadFileToString(path));
    if (bytes.compare(0, kSaveMagic.size(), kSaveMagic) != 0) return Corruption(path + ": not a herd chat file");
    size_t at = kSaveMagic.size();
    uint64_t n = 0;
    if (bytes.size() - at < sizeof n) return Corruption(path + ": truncated");
    std::memcpy(&n, bytes.data() + at, sizeof n);
    at += sizeof n;
    if (n > bytes.size() - at) return Corruption(path + ": truncated header");
    nlohmann::json j = ParseJsonBounded(std::string_view(bytes).substr(at, n));
    if (j.is_discarded() || !j.is_object()) return Corruption(path + ": damaged header");
    at += n;
    std::vector<int32_t> cached, pending;
    std::vector<runtime::ChatMessage> transcript;
    int turns = 0;
    try {
      const std::string fingerprint = j.at("model_fingerprint").get<std::string>();
      if (fingerprint != fingerprint_) {
        return InvalidArgument(path + ": saved from another model (" + j.value("model", std::string("?")) +
                               "; its config and tensors differ from " + o_.common.model + "'s)");
      }
      if (j.at("tokens_mode").get<bool>() != o_.tokens_mode) {
        return InvalidArgument(path + ": saved in " + (o_.tokens_mode ? "text" : "--tokens") + " mode");
      }
      cached = j.at("cached_tokens").get<std::vector<int32_t>>();
      pending = j.at("pending_tokens").get<std::vector<int32_t>>();
      turns = j.at("turns").get<int>();
      for (const auto& msg : j.at("messages")) {
        transcript.push_back({msg.at("role").get<std::string>(), msg.at("content").get<std::string>()});
      }
    } catch (const nlohmann::json::exception& e) {
      return Corruption(path + ": damaged header (" + e.what() + ")");
    }
    const int64_t vocab = m_.model->config().vocab_size;
    for (const std::vector<int32_t>* list : {&cached, &pending}) {
      for (int32_t id : *list) {
        if (id < 0 || id >= vocab) {
          return Corruption(path + ": token " + std::to_string(id) + " is outside the vocabulary [0, " +
                            std::to_string(vocab) + ")");
        }
      }
    }
    if (turns < 0) return Corruption(path + ": negative turn count");
    if (static_cast<int64_t>(cached.size() + pending.size()) >= state_->n_ctx()) {
      return Corruption(path + ": " + std::to_string(cached.size()) + " cached and " + std::to_string(pending.size()) +
                        " pending tokens do not fit the context of " + std::to_string(state_->n_ctx()));
    }
    // The state is replaced only once everything above holds; LoadFrom leaves it unchanged on error.
    HERD_RETURN_IF_ERROR(state_->LoadFrom(std::string_view(bytes).substr(at)).WithContext(path));
    if (state_->n_past() != static_cast<int64_t>(cached.size())) {
      Reset();
      return Corruption(path + ": transcript and KV cache disagree (the conversation was reset)");
    }
    cached_ = std::move(cached);
    pending_ = std::move(pending);
    transcript_ = std::move(transcript);
    turns_ = turns;
    std::fprintf(stderr, "[loaded %zu messages, %" PRId64 " cached positions from %s]\n", transcript_.size(),
                 state_->n_past(), path.c_str());
    return Status::Ok();
  }

  int64_t processed_total() const { return processed_total_; }

 private:
  Result<int32_t> EndOfTurnId() const {
    auto id = m_.tokenizer->TokenId(format_ == runtime::ChatFormat::kLlama4 ? "<|eot|>" : "<|eot_id|>");
    if (!id) return NotSupported("the tokenizer has no end-of-turn token");
    return *id;
  }

  const ChatOptions& o_;
  const runtime::SamplingParams sampling_;
  runtime::LoadedModel& m_;
  std::unique_ptr<model::ModelState> state_;
  ThreadPool& pool_;
  runtime::ChatFormat format_ = runtime::ChatFormat::kLlama4;
  int32_t end_of_turn_ = -1;
  std::vector<int32_t> cached_;   // tokens in the KV cache, in order
  std::vector<int32_t> pending_;  // tokens the next turn must process before its own
  std::vector<runtime::ChatMessage> transcript_;
  std::vector<vision::Image> images_;  // /image FILE, for the next turn
  int turns_ = 0;
  int64_t processed_total_ = 0;
  const std::string fingerprint_;
};

// Reads one line: with line editing and history on a terminal, plain getline otherwise. False at end of input.
bool ReadLine(bool tty, std::string* line) {
  if (tty) {
    char* s = readline("> ");
    if (!s) return false;
    *line = s;
    std::free(s);
    if (!line->empty()) add_history(line->c_str());
    return true;
  }
  return static_cast<bool>(std::getline(std::cin, *line));
}

Status CmdChat(const ChatOptions& o) {
  HERD_ASSIGN_OR_RETURN(runtime::SamplingParams sampling, o.sampling.Resolve());
  HERD_ASSIGN_OR_RETURN(auto loaded, Load(o.common, !o.tokens_mode));
  runtime::LoadedModel& m = *loaded;
  HERD_ASSIGN_OR_RETURN(int64_t n_ctx, ContextSize(o.common, m.model->config(), 4096));
  HERD_ASSIGN_OR_RETURN(auto state, NewState(o.common, *m.model, n_ctx));
  HERD_ASSIGN_OR_RETURN(auto pool, MakePool(o.common));
  ChatSession session(o, sampling, m, std::move(state), *pool);
  HERD_RETURN_IF_ERROR(session.Init());
  const bool tty = isatty(STDIN_FILENO) != 0;
  std::fprintf(stderr,
               "herd chat: %s, context %" PRId64 ", %d threads. /reset, /save FILE, /load FILE, /image FILE, /exit\n",
               o.common.model.c_str(), n_ctx, pool->size());
  std::string line;
  int n_lines = 0, n_failed = 0;
  Status last_error;
  while (ReadLine(tty, &line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    Status s;
    if (line == "/exit" || line == "/quit") break;
    ++n_lines;
    if (line == "/reset") {
      session.Reset();
      std::fprintf(stderr, "[conversation reset]\n");
      continue;
    }
    if (line == "/help") {
      std::fprintf(stderr,
                   "/reset  forget the conversation\n/save FILE  save it with its KV cache\n"
                   "/load FILE  continue a saved conversation\n/image FILE  show an image with the next message\n"
                   "/exit  quit\n");
      continue;
    }
    if (line.rfind("/image ", 0) == 0) {
      s = session.AddImage(line.substr(7));
    } else if (line.rfind("/save ", 0) == 0) {
      s = session.Save(line.substr(6));
    } else if (line.rfind("/load ", 0) == 0) {
      s = session.Load(line.substr(6));
    } else if (line[0] == '/' && line.rfind("//", 0) != 0) {
      s = InvalidArgument("unknown command '" + line + "' (/help lists them; start with // to send a slash)");
    } else {
      s = session.Turn(line.rfind("//", 0) == 0 ? line.substr(1) : line);
    }
    if (s.ok()) continue;
    // Nobody reads the replies any more: stop.
    if (IsOutputError(s)) return s;
    // Other errors end the line, not the session; the exit code still says that something failed.
    std::fprintf(stderr, "herd: error: %s\n", s.ToString().c_str());
    ++n_failed;
    last_error = s;
  }
  std::fprintf(stderr, "[%" PRId64 " tokens processed in total]\n", session.processed_total());
  if (n_failed > 0) {
    return Status(last_error.code(), std::to_string(n_failed) + " of " + std::to_string(n_lines) +
                                         " lines failed; the last: " + last_error.message());
  }
  return Status::Ok();
}

}  // namespace

Command AddChatCommand(CLI::App& app) {
  auto o = std::make_shared<ChatOptions>();
  auto* cmd = app.add_subcommand("chat", "interactive multi-turn chat (the conversation stays in the KV cache)");
  AddModelOptions(cmd, &o->common);
  AddKvTypeOption(cmd, &o->common.kv_type);
  cmd->add_option("--system", o->system, "system prompt");
  cmd->add_option("-n,--n-predict", o->n_predict, "maximum tokens per reply")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 30));
  AddSamplingOptions(cmd, &o->sampling);
  cmd->add_option("--max-tiles", o->max_tiles, "tiles per /image at most (Meta's max_num_chunks)")
      ->check(CLI::Range(int64_t{1}, int64_t{64}));
  cmd->add_flag("--tokens", o->tokens_mode,
                "input lines are comma-separated token ids, replies are printed as ids (no tokenizer needed)");
  return {cmd, [o] { return CmdChat(*o); }};
}

}  // namespace herd::cli
