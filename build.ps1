#!/usr/bin/env pwsh
# PowerShell mirror of build.sh: the same verbs, the same dotnet/cmake commands. See build.sh for details.
# Verbs: native | bindings [--check] | build | test [args] | dotnet-test [args] | sloth ARGS... | demo [options] |
#        bench [args] | pack | selftest | gpu-bundle | gpu-run OUTDIR   (selftest, gpu-bundle, gpu-run: through build.sh)
# On Linux hosts whose libstdc++ is older than GCC 13 (Debian 12), TorchSharp 0.107 cannot load: use build.sh there,
# which runs the TorchSharp processes in a Debian 13 userland.
param([Parameter(Position = 0)][string]$Verb = "help", [Parameter(ValueFromRemainingArguments = $true)][string[]]$Rest)
$ErrorActionPreference = "Stop"
$Root = $PSScriptRoot
$Config = if ($env:CONFIG) { $env:CONFIG } else { "Release" }
$Tfm = "net10.0"


function Invoke-Checked([string]$exe, [string[]]$argv) {
    & $exe @argv
    if ($LASTEXITCODE -ne 0) { throw "$exe $($argv -join ' ') failed with exit code $LASTEXITCODE" }
}

function Native {
    $cmakeArgs = @("-S", "$Root/native", "-B", "$Root/build/native", "-DCMAKE_BUILD_TYPE=Release")
    if (Get-Command ninja -ErrorAction SilentlyContinue) { $cmakeArgs += @("-G", "Ninja") }
    if ($env:SLOTH_CUDA_ARCHITECTURES) { $cmakeArgs += "-DSLOTH_CUDA_ARCHITECTURES=$($env:SLOTH_CUDA_ARCHITECTURES)" }
    if ($env:SLOTH_CUDA) { $cmakeArgs += "-DSLOTH_CUDA=$($env:SLOTH_CUDA)" }
    if ($env:SLOTH_WERROR) { $cmakeArgs += "-DSLOTH_WERROR=$($env:SLOTH_WERROR)" }
    Invoke-Checked cmake $cmakeArgs
    Invoke-Checked cmake @("--build", "$Root/build/native", "-j", [Environment]::ProcessorCount)
    Invoke-Checked cmake @("--install", "$Root/build/native")
}

function Build { Native; Invoke-Checked dotnet @("build", "$Root/SlothSharp.slnx", "-c", $Config, "-v", "quiet", "-nologo", "-clp:ErrorsOnly") }

function Summarize([string[]]$lines, [int]$code) {
    $get = { param($k) ($lines | Select-String "^\s*${k}:\s*(\d+)" | Select-Object -Last 1).Matches.Groups[1].Value }
    $total = & $get "total"
    if (-not $total) { "0 passed, 1 failed"; exit 1 }
    "$(& $get 'succeeded') passed, $(& $get 'failed') failed, $(& $get 'skipped') skipped"
    if ((& $get 'failed') -ne "0" -or ($code -ne 0 -and $code -ne 8)) { exit 1 }
}

switch ($Verb) {
    "native" { Native }
    "bindings" { Invoke-Checked python3 (@("$Root/tools/bindgen/gen_bindings.py", "$Root/native/include/slothsharp.h", "$Root/src/Interop/Generated/NativeMethods.g.cs") + $Rest) }
    "build" { Build }
    "test" {
        Build

        $out = & dotnet "$Root/tests/bin/$Config/$Tfm/SlothSharp.Tests.dll" --no-progress @Rest 2>&1 | Tee-Object -Variable lines
        Summarize ($lines | ForEach-Object { "$_" }) $LASTEXITCODE
    }
    "dotnet-test" {
        Native
        Push-Location $Root
        try { Invoke-Checked dotnet (@("test", "-c", $Config) + $Rest) } finally { Pop-Location }
    }
    { $_ -in "sloth", "demo" } {
        if ($env:SLOTHSHARP_SKIP_BUILD -ne "1") {
            Native
            Invoke-Checked dotnet @("build", "$Root/src/Cli/SlothSharp.Cli.csproj", "-c", $Config, "-v", "quiet", "-nologo", "-clp:ErrorsOnly")
        }
        $argv = if ($Verb -eq "demo" -and (-not $Rest -or $Rest[0].StartsWith("-"))) { @("demo") + $Rest } else { $Rest }
        & dotnet (@("$Root/src/Cli/bin/$Config/$Tfm/sloth.dll") + $argv)
        exit $LASTEXITCODE  # the CLI's exit code (2 = bad input, 3 = demo out of tolerance)
    }
    "bench" { Build; Invoke-Checked dotnet (@("$Root/bench/bin/$Config/$Tfm/SlothSharp.Bench.dll") + $Rest) }
    "pack" {
        Build
        Invoke-Checked dotnet @("pack", "$Root/src/Interop/SlothSharp.Interop.csproj", "-c", $Config, "-o", "$Root/artifacts/packages")
        Invoke-Checked dotnet @("pack", "$Root/src/Api/SlothSharp.csproj", "-c", $Config, "-o", "$Root/artifacts/packages")
        Invoke-Checked dotnet @("pack", "$Root/src/Cli/SlothSharp.Cli.csproj", "-c", $Config, "-o", "$Root/artifacts/packages")
    }
    { $_ -in "selftest", "gpu-bundle", "gpu-run" } { Invoke-Checked bash (@("$Root/build.sh", $Verb) + $Rest) }
    default { Get-Content "$Root/build.sh" | Select-Object -Skip 1 -First 19 | ForEach-Object { $_ -replace '^# ?', '' } }
}
