# The native addon for node-gyp users: the same sources (native/*.cc) against the same LibTorch as CMakeLists.txt.
# LibTorch's paths come from build/libtorch.json (scripts/libtorch.mjs writes it; `node-gyp rebuild` deletes build/
# first, so a missing file is written again here), or from the file $PENNY_LIBTORCH_JSON names.
# `npm run build:gyp` builds this without touching the cmake-js build/ folder: build-gyp/Release/penny_native.node.
{
  'variables': {
    'libtorch_json%': "<!(node -p \"const f = require('path').resolve(process.env.PENNY_LIBTORCH_JSON || 'build/libtorch.json'); if (!require('fs').existsSync(f)) require('child_process').execFileSync(process.execPath, ['scripts/libtorch.mjs'], { stdio: ['ignore', 2, 2] }); f\")",
  },
  'targets': [{
    'target_name': 'penny_native',
    'sources': ["<!@(node -p \"require('fs').readdirSync('native').filter((f) => f.endsWith('.cc')).sort().map((f) => 'native/' + f).join(' ')\")"],
    'include_dirs': ["<!(node -p \"require('node-addon-api').include_dir\")"],
    'defines': ['NAPI_VERSION=8', 'NODE_ADDON_API_DISABLE_DEPRECATED', 'NAPI_CPP_EXCEPTIONS'],
    'variables': {
      'torch_include': "<!(node -p \"require('<(libtorch_json)').includeDir\")",
      'torch_lib': "<!(node -p \"require('<(libtorch_json)').libDir\")",
      # distributed.cc's c10d part, where this LibTorch has Gloo (as CMakeLists.txt decides it)
      'distributed': "<!(node -p \"+require('fs').existsSync(require('<(libtorch_json)').includeDir + '/torch/csrc/distributed/c10d/ProcessGroupGloo.hpp')\")",
    },
    # LibTorch's headers are system headers, as CMake makes them: no warnings from them.
    'cflags_cc': ['-isystem', '<(torch_include)', '-isystem', '<(torch_include)/torch/csrc/api/include'],
    # Node's common.gypi builds C++17 without exceptions or RTTI; LibTorch needs C++20, the code throws and uses dynamic_cast.
    'cflags!': ['-fno-exceptions', '-Wextra'],
    'cflags_cc!': ['-fno-exceptions', '-fno-rtti', '-std=gnu++17'],
    'conditions': [
      ['OS=="linux"', {
        # TorchConfig.cmake sets no TORCH_CXX_FLAGS for LibTorch 2.13: it is built with the C++11 ABI only.
        'defines': ['_GLIBCXX_USE_CXX11_ABI=1'],
        'cflags_cc': ['-std=gnu++20', '-Wall', '-Wno-unused-parameter'],
        'conditions': [['distributed==1', {
          'defines': ['PENNY_DISTRIBUTED', 'USE_C10D_GLOO'],
          'cflags_cc': ['-isystem', '<(module_root_dir)/native/third_party/gloo'],
        }]],
        # --no-as-needed as CMake does: libtorch.so's own code is not called, but it loads torch_cuda where there is one.
        'libraries': ['-L<(torch_lib)', '-Wl,--no-as-needed', '-ltorch', '-ltorch_cpu', '-lc10', '-Wl,--as-needed',
                      '-Wl,-rpath,<(torch_lib)'],
      }],
      ['OS=="mac"', {
        'xcode_settings': {
          'CLANG_CXX_LANGUAGE_STANDARD': 'gnu++20',
          'GCC_ENABLE_CPP_EXCEPTIONS': 'YES',
          'GCC_ENABLE_CPP_RTTI': 'YES',
          'OTHER_CPLUSPLUSFLAGS': ['-isystem', '<(torch_include)', '-isystem', '<(torch_include)/torch/csrc/api/include'],
          'OTHER_LDFLAGS': ['-Wl,-rpath,<(torch_lib)'],
        },
        'libraries': ['-L<(torch_lib)', '-ltorch', '-ltorch_cpu', '-lc10'],
      }],
    ],
  }],
}
