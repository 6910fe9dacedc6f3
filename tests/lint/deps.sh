#!/bin/sh
# One-way module dependencies (docs/ARCHITECTURE.md): every #include "dir/..."
# of a module must name a module it may depend on. Usage: deps.sh SOURCE_ROOT
set -u
cd "$1" || exit 2
# module: the modules it may include (besides itself)
allowed() {
    case $1 in
        common)    echo "" ;;
        proto)     echo "common" ;;
        kernels)   echo "common" ;;
        tokenizer) echo "common" ;;
        constrain) echo "common tokenizer" ;;
        model)     echo "common kernels" ;;
        bench)     echo "common kernels model proto transport kvstore engine router" ;;
        engine)    echo "common kernels model tokenizer router constrain kvstore" ;;
        router)    echo "common tokenizer proto constrain" ;;
        transport) echo "common proto" ;;
        cluster)   echo "common proto transport router" ;;
        worker)    echo "common proto transport router engine" ;;
        prefill)   echo "common proto transport kernels model engine router worker" ;;
        decode)    echo "common proto transport kernels model engine router worker" ;;
        kvstore)   echo "common" ;;
        *)         echo "*" ;;
    esac
}
fail=0
for mod in common proto kernels tokenizer constrain model bench engine router transport cluster worker prefill decode kvstore; do
    [ -d "$mod" ] || continue
    ok=$(allowed "$mod")
    for f in $(find "$mod" -name '*.c' -o -name '*.h' -o -name '*.cu'); do
        for dep in $(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([a-z_]*\)\/.*/\1/p' "$f" | sort -u); do
            [ "$dep" = "$mod" ] && continue
            case " $ok " in
                *" $dep "*) ;;
                *) echo "$f includes $dep/: $mod may depend only on: ${ok:-nothing}"; fail=1 ;;
            esac
        done
    done
done
# The router never links the model, kernels, UCX or CUDA.
if grep -rlE '#include <(ucp/|cuda|nccl)' router cluster 2>/dev/null; then
    echo "router/ or cluster/ includes UCX or CUDA headers"; fail=1
fi
[ $fail = 0 ] && echo "module dependencies are one-way"
exit $fail
