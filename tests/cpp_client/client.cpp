// A kvstore client in C++, built only from what the stock Thrift compiler makes of kvstore.thrift and Debian's
// libthrift-dev: usage: KVSTORE_USER=... KVSTORE_PASSWORD=... ./client HOST PORT
// It prints one JSON line per step; tests/test_idl.py compiles it, starts real nodes, runs it, and checks each line.
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <thrift/protocol/TBinaryProtocol.h>
#include <thrift/transport/TBufferTransports.h>
#include <thrift/transport/TSocket.h>

#include "KVStore.h"

using apache::thrift::protocol::TBinaryProtocol;
using apache::thrift::transport::TFramedTransport;
using apache::thrift::transport::TSocket;

static std::string quoted(const std::string& text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

static void say(const std::string& step, const std::string& fields) {
  std::cout << "{\"step\": " << quoted(step) << (fields.empty() ? "" : ", ") << fields << "}" << std::endl;
}

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: client HOST PORT" << std::endl;
    return 2;
  }
  auto socket = std::make_shared<TSocket>(argv[1], std::atoi(argv[2]));
  socket->setConnTimeout(5000);
  socket->setRecvTimeout(10000);
  auto transport = std::make_shared<TFramedTransport>(socket);
  KVStoreClient kv(std::make_shared<TBinaryProtocol>(transport));
  const auto QUORUM = ConsistencyLevel::QUORUM;
  try {
    transport->open();
    ReadResult read;
    try {  // before login: a typed refusal, and the connection stays open
      kv.get(read, "cpp:a", QUORUM, 0);
      say("before-login", "\"raised\": null");
    } catch (const Unauthorized& err) {
      say("before-login", "\"raised\": \"Unauthorized\", \"why\": " + quoted(err.why));
    }
    LoginResult login;
    kv.login(login, std::getenv("KVSTORE_USER"), std::getenv("KVSTORE_PASSWORD"));
    say("login", "\"user\": " + quoted(login.user) + ", \"role\": " + quoted(login.role));

    WriteResult written;
    kv.put(written, "cpp:a", "from c++", QUORUM, 0, 0);
    say("put", "\"timestamp\": " + std::to_string(written.timestamp) +
                   ", \"acknowledged\": " + std::to_string(written.acknowledged.size()));
    kv.get(read, "cpp:a", QUORUM, 0);
    say("get", "\"value\": " + quoted(read.cell.value) + ", \"timestamp\": " + std::to_string(read.cell.timestamp));

    std::vector<KeyValue> items(5);
    for (int i = 0; i < 5; i++) {
      items[i].key = "cpp:k" + std::to_string(i);
      items[i].value = "v" + std::to_string(i);
    }
    std::vector<KeyWriteOutcome> outcomes;
    kv.multi_put(outcomes, items, QUORUM, 0, 0);
    int ok = 0;
    for (const auto& outcome : outcomes) ok += outcome.__isset.result ? 1 : 0;
    say("multi_put", "\"ok\": " + std::to_string(ok));

    std::string keys, start = "cpp:k";
    for (;;) {  // a scan, two keys a page, resumed from resume_key until it is unset
      ScanResult page;
      kv.scan(page, start, "cpp:l", 2, QUORUM);
      for (const auto& m : page.items) keys += (keys.empty() ? "" : ", ") + quoted(m.key);
      if (!page.__isset.resume_key) break;
      start = page.resume_key;
    }
    say("scan", "\"keys\": [" + keys + "]");

    ExpireResult expired;
    kv.expire(expired, "cpp:a", 600, QUORUM, 0);
    say("expire", std::string("\"found\": ") + (expired.found ? "true" : "false") +
                      ", \"timestamp\": " + std::to_string(expired.written.timestamp));

    try {
      kv.put(written, "", "x", QUORUM, 0, 0);
      say("empty-key", "\"raised\": null");
    } catch (const InvalidRequest& err) {
      say("empty-key", "\"raised\": \"InvalidRequest\", \"why\": " + quoted(err.why));
    }
    transport->close();
  } catch (const std::exception& err) {
    say("failed", "\"message\": " + quoted(err.what()));
    return 1;
  }
  return 0;
}
