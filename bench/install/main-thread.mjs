// Preload for benches: appends the main thread's CPU time to $CPM_THREAD_OUT when the process
// exits (utime + stime of the process's first task, /proc/self/task/PID/stat), beside the whole
// process's. The main thread is the install's critical path; workers run beside it.
//   CPM_THREAD_OUT=/tmp/t.txt NODE_OPTIONS="--import $PWD/bench/install/main-thread.mjs" \
//     node bin/cpm.js rootfs init --from oci:LAYOUT:z --root DIR -q
import { appendFileSync, readFileSync } from 'node:fs';
import { isMainThread } from 'node:worker_threads';

const out = process.env.CPM_THREAD_OUT;
if (out && isMainThread)
  process.on('exit', () => {
    const st = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8');
    const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
    const hz = 100; // USER_HZ on Linux
    const all = process.cpuUsage();
    appendFileSync(
      out,
      `main ${((+f[11] + +f[12]) / hz).toFixed(2)} user ${(+f[11] / hz).toFixed(2)} sys ${(+f[12] / hz).toFixed(2)} process ${((all.user + all.system) / 1e6).toFixed(2)}\n`,
    );
  });
