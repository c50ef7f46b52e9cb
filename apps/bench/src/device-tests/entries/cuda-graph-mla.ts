import '../../../../../packages/cuda-graph/test/mla-graph.test';
import { main } from '../run';

await main('cuda-graph/test/mla-graph');
