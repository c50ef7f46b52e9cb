import '../../../../../packages/cuda-graph/test/prefill-graph.test';
import { main } from '../run';

await main('cuda-graph/test/prefill-graph');
