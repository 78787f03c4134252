#!/usr/bin/env node
// penny-train: the command line over train() (and export, which shares its code path).
import os from 'node:os';
import { Command, CommanderError, Option } from 'commander';
import { PRECISIONS } from './backend/types.js';
import { MODEL_KEYS, DEFAULT_CONFIG_FILE, parseSettings } from './config/config.js';
import { InterruptedError, UsageError } from './errors.js';
import { addPredictCommand } from './predict/command.js';
import { DistributedError, rankFromEnv } from './train/distributed.js';
import { exportCheckpoint, imx500Checkpoint, train, type TrainOptions } from './train/train.js';
import { nonNegativeInt, positiveInt } from './util/cli-args.js';
import { PACKAGE_VERSION } from './version.js';

// sharp's decodes and the addon's pixel work (resample, render) run on libuv's pool (the tensor steps on their own
// compute thread): room for the loader's batches in flight, and a thread per core where there are more than 8 (a GPU
// run's input pipeline needs them all). Set before anything starts the pool.
process.env.UV_THREADPOOL_SIZE ??= String(Math.max(8, os.availableParallelism()));

/** snake_case flags are the original's; kebab-case ones are accepted too. */
const ALIASES: Record<string, string> = {
  '--config-file': '--config_file', '--data-examples': '--data_examples', '--batch-size': '--batch_size', '--model-key': '--model_key',
  '--node-rank': '--node_rank', '--master-addr': '--master_addr', '--master-port': '--master_port', '--dist-timeout': '--dist_timeout',
};

export function normaliseArgv(argv: string[]): string[] {
  return argv.map((a) => {
    const [flag, ...rest] = a.split('=');
    const to = ALIASES[flag];
    return to ? [to, ...rest].join('=') : a;
  });
}


export function buildProgram(): Command {
  const program = new Command('penny-train')
    .description('Train a Penny AI classifier (side, orientation, date, mint) and export it to ONNX (fp32, int8).')
    .version(PACKAGE_VERSION, '-V, --version', 'print the version')
    .addOption(new Option('-m, --model_key <key>', 'the model to train (a section of the config)').choices(MODEL_KEYS))
    .option('--epochs <n>', 'override num_epochs', positiveInt('--epochs'))
    .option('--batch_size <n>', 'override batch_size (alias --batch-size)', positiveInt('--batch_size'))
    .option('--device <device>', 'cpu, cuda or cuda:N (default: the config\'s, else cuda when available, else cpu)')
    .option('--resume <checkpoint.pt>', 'continue from a checkpoint: weights, optimizer, scheduler, epoch, best metric')
    .option('--config_file <path>', 'the master config (alias --config-file)', DEFAULT_CONFIG_FILE)
    .option('--data_examples', 'use data_examples/ as data_root (alias --data-examples)')
    .addOption(new Option('--backend <backend>', 'tensor backend').choices(['native', 'js']))
    .option('--threads <n>', 'LibTorch intra-op threads (default: the config\'s, else all cores)', positiveInt('--threads'))
    .addOption(new Option('--precision <p>', "the forward's arithmetic: fp32, or bf16 / fp16 autocast with fp32 weights (native " +
      "backend; bf16 on CUDA or a CPU with bf16 instructions, fp16 on CUDA); default the config's").choices(PRECISIONS))
    .option('--set <key=value>', 'override any config key, dotted for nested ones (augment.blur_p=0); repeatable',
      (v: string, all: string[] = []) => [...all, v])
    .option('--overwrite', "replace an earlier run's checkpoints (default: keep them, renamed <model>_<last|best>.<run id>.pt)")
    .option('--nproc <n>', 'data-parallel: ranks (processes) on this machine, each on its part of every batch', positiveInt('--nproc'))
    .option('--nnodes <n>', 'data-parallel: machines, each running --nproc ranks', positiveInt('--nnodes'))
    .option('--node_rank <n>', "this machine's place, 0 ... nnodes - 1 (alias --node-rank)", nonNegativeInt('--node_rank'))
    .option('--master_addr <host>', "rank 0's machine, which serves the rendezvous (default 127.0.0.1; alias --master-addr)")
    .option('--master_port <port>', 'its port (default 29500; alias --master-port)', positiveInt('--master_port'))
    .option('--dist_timeout <s>', 'seconds a rank waits for the others before the run stops (default 1800)', positiveInt('--dist_timeout'))
    .enablePositionalOptions()
    .helpCommand(true)   // `penny-train help predict`: implicit only where the root has no action of its own
    .showHelpAfterError('(penny-train --help shows the usage)')
    .addHelpText('after', `
Outputs (relative to the working directory):
  models/<model>/<model>_<YYYYMMDD-HHMMSS>_fp32.onnx, _int8.onnx   (output_dir of the config)
  output/checkpoints/<model>_last.pt, <model>_best.pt
  output/training_logs/<model>_<YYYYMMDD-HHMMSS>.log
  output/label_maps/<model>_label_map.json

Distributed (data-parallel over LibTorch's c10d, Gloo): --nproc N launches N ranks here; on several machines run the
  same command on each with --nnodes, --node_rank, --master_addr, --master_port (or under torchrun: RANK, WORLD_SIZE,
  LOCAL_RANK, MASTER_ADDR, MASTER_PORT). batch_size is the global batch; rank 0 validates and writes every file.

Exit status: 0 done; 1 a fault of penny-train or the machine (a stack trace follows); 2 bad usage, config, data or
  checkpoint, or an output that cannot be written (disk full, read-only, permission); 130 interrupted by Ctrl-C,
  143 by SIGTERM (the current step finishes and _last.pt is written first; a second signal quits at once).

Example (the original's sanity run):
  penny-train -m side --epochs 1 --batch_size 8 --device cpu --data_examples`)
    .action(async (o) => {
      if (!o.model_key) program.error("error: required option '-m, --model_key <key>' not specified", { exitCode: 2 });
      const controller = stopOnSignals();
      await train(o.model_key, {
        epochs: o.epochs, batchSize: o.batch_size, device: o.device, resume: o.resume, configFile: o.config_file,
        dataExamples: o.data_examples, backend: o.backend, threads: o.threads, precision: o.precision, overwrite: o.overwrite, signal: controller.signal,
        set: o.set ? parseSettings(o.set) : undefined, distributed: distributedOf(o),
      });
    });
  program.command('export')
    .description('re-export a checkpoint to ONNX (fp32, int8) without training, as the end of a training run does, ' +
      'from the config stored in the checkpoint')
    .requiredOption('--checkpoint <path.pt>', 'a penny-train checkpoint (output/checkpoints/<model>_best.pt)')
    .option('--output <dir>', "the folder for the ONNX files (default: the config's output_dir)")
    .option('--no-int8', 'write the fp32 ONNX only')
    .option('--calibration <dir>', 'images to calibrate INT8 on (and, without the training data, to check parity on); ' +
      'date/mint: ROI crops. Without the data or this, INT8 is skipped')
    .option('--config_file <path>', "read this config's section instead of the checkpoint's (alias --config-file)")
    .option('--data_examples', 'use data_examples/ as data_root (alias --data-examples)')
    .option('--device <device>', 'cpu, cuda or cuda:N')
    .addOption(new Option('--backend <backend>', 'tensor backend').choices(['native', 'js']))
    .option('--threads <n>', 'LibTorch intra-op threads', positiveInt('--threads'))
    .option('--set <key=value>', 'override a config key of the checkpoint\'s (calibration_method=percentile); repeatable',
      (v: string, prev: string[] = []) => [...prev, v])
    .showHelpAfterError('(penny-train export --help shows the usage)')
    .action(async (o) => {
      await exportCheckpoint(o.checkpoint, {
        configFile: o.config_file, dataExamples: o.data_examples, device: o.device, backend: o.backend, threads: o.threads,
        output: o.output, int8: o.int8, calibration: o.calibration, set: o.set ? parseSettings(o.set) : undefined,
        signal: stopOnSignals().signal,
      });
    });
  program.command('imx500')
    .description("quantize a checkpoint with Sony's model-compression-toolkit for the IMX500 and compile it with imx500-converter " +
      '(needs `npm run setup:imx500`): MCT\'s ONNX, packerOut.zip, dnnParams.xml and the memory report in <output>/<model>_<stamp>_imx500/')
    .requiredOption('--checkpoint <path.pt>', 'a penny-train checkpoint (output/checkpoints/<model>_best.pt)')
    .option('--calibration <dir>', 'images to calibrate on when the training data is absent (date/mint: ROI crops)')
    .option('--output <dir>', "the folder the <model>_<stamp>_imx500/ folder goes in (default: the config's output_dir)")
    .option('--config_file <path>', "read this config's section instead of the checkpoint's (alias --config-file)")
    .option('--data_examples', 'use data_examples/ as data_root (alias --data-examples)')
    .showHelpAfterError('(penny-train imx500 --help shows the usage)')
    .action(async (o) => {
      await imx500Checkpoint(o.checkpoint, { configFile: o.config_file, dataExamples: o.data_examples, output: o.output, calibration: o.calibration });
    });
  addPredictCommand(program);
  return program;
}

/** This process as one rank of torchrun's environment, or the ranks to launch from the flags; undefined: one process. */
function distributedOf(o: Record<string, unknown>): TrainOptions['distributed'] {
  const timeoutS = o.dist_timeout as number | undefined;
  const env = rankFromEnv(process.env, timeoutS);
  if (env) return env;
  if (o.nproc === undefined && o.nnodes === undefined) return undefined;
  return {
    nproc: o.nproc as number | undefined, nnodes: o.nnodes as number | undefined, nodeRank: o.node_rank as number | undefined,
    masterAddr: o.master_addr as string | undefined, masterPort: o.master_port as number | undefined, timeoutS,
  };
}

/**
 * SIGINT (Ctrl-C) and SIGTERM (docker stop, systemd, timeout) stop the run the same way: the current step finishes,
 * _last.pt is written, exit 130 / 143. A second signal quits at once.
 */
function stopOnSignals(): AbortController {
  const controller = new AbortController();
  for (const [sig, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
    process.on(sig, () => {
      if (controller.signal.aborted) process.exit(code);
      console.error(`\n${sig}: finishing the current step and writing the last checkpoint (again to quit now)`);
      controller.abort(sig);
    });
  }
  return controller;
}

export async function main(argv = process.argv): Promise<number> {
  const program = buildProgram();
  // on every command: a subcommand's usage error must exit 2 too, not commander's own process.exit(1)
  for (const c of [program, ...program.commands]) c.exitOverride();
  try {
    await program.parseAsync(normaliseArgv(argv));
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      return e.exitCode === 0 ? 0 : 2;   // --help / --version exit 0; usage errors were printed by commander
    }
    if (e instanceof InterruptedError) {
      console.error(`penny-train: ${e.message}`);
      return e.exitCode;
    }
    if (e instanceof UsageError) {
      console.error(`penny-train: ${e.message}`);
      return 2;
    }
    if (e instanceof DistributedError) {   // the ranks' own output above says the rest
      console.error(`penny-train: ${e.message}`);
      return 1;
    }
    console.error(`penny-train: ${(e as Error).stack ?? e}`);
    return 1;
  }
}

process.exitCode = await main();
