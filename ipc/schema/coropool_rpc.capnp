@0xea97616675f786bc;
# The wire protocol between a supervisor and one of its workers, over a private socketpair.
# The supervisor bootstraps `Worker`; the worker sends results back through the `ResultSink`
# the supervisor hands it in `hello`.

$import "/capnp/c++.capnp".namespace("coropool::ipc::rpc");

struct Job {
  id @0 :UInt64;        # supervisor's in-flight slot id, echoed back in the Result
  invoker @1 :UInt64;   # address of the task's invoker (same image on both sides: fork)
  target @2 :UInt64;    # address of the user function, or 0 for a captureless lambda
  args @3 :Data;        # encoded argument tuple (coropool::ipc codec)
}

struct Failure {
  typeName @0 :Text;    # demangled type of the exception thrown by the task
  message @1 :Text;     # what()
  kind @2 :Kind;
  enum Kind {
    exception @0;       # the task threw
    decode @1;          # the arguments did not decode in the worker
    encode @2;          # the result did not fit a message
    cancelled @3;       # the job was cancelled before or while running
  }
}

struct Result {
  id @0 :UInt64;
  union {
    value @1 :Data;     # encoded result
    failure @2 :Failure;
  }
}

interface ResultSink {
  # Results travel in batches: everything finished in one worker loop turn.
  done @0 (results :List(Result)) -> ();
}

interface Worker {
  hello @0 (sink :ResultSink) -> (pid :Int32);
  # Jobs travel in batches; returns once queued. The supervisor never has more jobs
  # outstanding on one worker than its window, and the worker runs at most
  # child_concurrency of them at once.
  submit @1 (jobs :List(Job)) -> ();
  # Drops queued jobs and cancels running ones; each still gets a Result (kind cancelled)
  # unless it had already finished.
  cancel @2 (ids :List(UInt64)) -> ();
}
